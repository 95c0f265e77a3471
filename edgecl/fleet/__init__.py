"""Fleet learning on Flower: devices share adapters, classes and class means, never images or memory."""
