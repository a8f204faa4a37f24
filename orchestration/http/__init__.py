"""The HTTP front door: a Ray Serve application over the serving system."""
