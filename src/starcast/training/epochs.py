"""Epoch bookkeeping for models trained by minibatches: the log and the best weights on valid."""

from __future__ import annotations

import numpy as np
import torch


class EpochLog:
    """Per-epoch records, and the weights of the epoch with the lowest valid RMSE."""

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.epochs: list[dict] = []
        self._best, self._state, self._waited = np.inf, None, 0

    def end_epoch(
        self, net: torch.nn.Module, epoch: int, loss: float, valid_rmse: float | None,
        seconds: float,
    ) -> bool:
        """Record an epoch; True when valid RMSE has not improved for `patience` epochs."""
        self.epochs.append(
            {"epoch": epoch, "loss": loss, "valid_rmse": valid_rmse, "seconds": seconds}
        )
        if valid_rmse is None:
            return False
        if valid_rmse < self._best:
            self._best, self._waited = valid_rmse, 0
            self._state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            return False
        self._waited += 1
        return self._waited >= self.patience

    def restore_best(self, net: torch.nn.Module) -> int:
        """Load the best weights (when valid was measured); returns the epoch they are from."""
        if self._state is None:
            return len(self.epochs)
        net.load_state_dict(self._state)
        return min(self.epochs, key=lambda h: h["valid_rmse"])["epoch"]
