"""On-device training: the peft adapters, the losses, the loop, the method table and the calibration that the
learner (edgecl.learner) drives; what a learn produces is an edgecl.learned value. The package name is written into
every saved adapter config (peft's auto_mapping.parent_library = "edgecl.learn.adapters")."""
