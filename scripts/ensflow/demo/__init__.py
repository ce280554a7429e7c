"""The embedded demo world: a reality-shaped open-data mirror and a tiny checkpoint."""
