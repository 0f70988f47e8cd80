"""Processing stages: the base classes, resources, and the function decorator."""
