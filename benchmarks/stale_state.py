"""Would training the head on stale states let a trained LSTM serve an offline test period?

    sets=synthetic,All_Beauty_5,Digital_Music_5.partial
    .venv/bin/python benchmarks/stale_state.py 0 $sets > /tmp/plain.log &
    .venv/bin/python benchmarks/stale_state.py 0.5 $sets > /tmp/stale.log
    cat /tmp/plain.log /tmp/stale.log > benchmarks/results/stale-state.log

An experiment, not part of the package. Read offline (`predict --history train+valid`), a
customer's k-th test event is predicted from the state after their last visible event, k - 1
events back; training only ever asks for the next event, so a trained state is read as if it
were fresh (benchmarks/valid_reading.py: on synthetic `time` a trained state cost the offline
reading 0.009). Here, while training, each target position is read, with probability SHARE,
from the state K - 1 events further back (K uniform on 2..MAX_SKIP, within the chunk): the
customer's fold-in sums as of that state, the log gap since that state's last event, the
item's features as they are. The head can then learn to discount a state by its age. The
first argument is SHARE (0: the default training); prediction and selection are unchanged
(SequenceNet.score, a method of the network, is wrapped). `time` protocol, seeds 0 and 1,
test RMSE read offline and online.
"""

import sys

import torch
from valid_reading import print_runs

from starcast.models import sequence_net

MAX_SKIP = 6
USER_COLUMNS = [0, 1]  # FEATURES: user_sum, user_n (the customer's fold-in sums)
_score = sequence_net.SequenceNet.score
share = 0.0


def _stale_score(self, batch: dict[str, torch.Tensor]):
    if not (self.training and self.recurrent and share > 0):
        return _score(self, batch)
    mask = batch["mask"]
    emb, item_bias = self.item_representation(batch["item"], batch["side"])
    before = self._states_before(batch, emb, item_bias)
    rows, t = torch.nonzero(mask, as_tuple=True)
    stale = torch.rand(len(t), device=t.device) < share
    skip = torch.randint(2, MAX_SKIP + 1, (len(t),), device=t.device)
    k = torch.where(stale, torch.minimum(skip, t + 1), torch.ones_like(t))
    j = t - k + 1  # the position whose state-before is read: after event t - k
    feats = batch["feats"][rows, t].clone()
    feats[:, USER_COLUMNS] = batch["feats"][rows, j][:, USER_COLUMNS]
    days = torch.cumsum(torch.expm1(batch["gap"].double()), dim=1)  # days since position 0
    since = days[rows, t] - torch.where(j > 0, days[rows, (j - 1).clamp_min(0)], days[rows, t])
    gap = torch.where(j > 0, torch.log1p(since.clamp_min(0)), torch.zeros_like(since)).float()
    gap = torch.where(k == 1, batch["gap"][rows, t], gap)
    return self.head(before[rows, j], emb[rows, t], item_bias[rows, t], feats, gap, None)


def main(stale_share: str, names: str) -> None:
    global share
    share = float(stale_share)
    sequence_net.SequenceNet.score = _stale_score
    print_runs({"share": share}, names)


if __name__ == "__main__":
    main(*sys.argv[1:3])
