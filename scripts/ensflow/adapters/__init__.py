"""Doors to the outside world: buckets, GRIB decode/encode, regridding, the Icechunk
ensemble store, pickles, checkpoints, open data, the quest's climatology, maps, GPUs.
Only these modules talk to those systems; stages call them."""
