"""Training stage: user simulator and environment, RLlib agents, export, evaluation, promotion gate."""
