"""Arithmetic shared by several stages: input states, the cGAN plan, the quest's weekly
windows, units and quintile probabilities. No I/O of its own beyond the adapters."""
