"""The zoo of example model specs (YAML), shipped as package data: ``sizing estimate resnet50``."""
