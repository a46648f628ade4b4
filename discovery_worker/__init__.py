"""The discovery worker: the live service registry behind `discovery.*`."""
