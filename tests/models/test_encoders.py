"""The sequence encoders: causal, windowed exactly as documented, and incremental."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from starcast.models.encoders import AttentionEncoder, LSTMEncoder, spans

INPUTS = 6


def attention(context: int = 7, layers: int = 2) -> AttentionEncoder:
    torch.manual_seed(0)
    net = AttentionEncoder(INPUTS, width=8, layers=layers, heads=2, context=context).eval()
    with torch.no_grad():  # the relative-position biases start at 0; make them matter
        for block in net.blocks:
            block.attention.distance.normal_()
    return net


@given(st.integers(1, 300), st.integers(1, 6))
def test_spans_add_up_to_the_context(context, layers) -> None:
    got = spans(context, layers)
    assert len(got) == layers and min(got) >= 1
    assert sum(s - 1 for s in got) + 1 == context


@pytest.mark.parametrize("layers", [1, 2, 3])
@torch.no_grad()
def test_the_state_reads_exactly_the_latest_context_events(layers) -> None:
    net, context, t = attention(7, layers), 7, 20
    x = torch.randn(1, t, INPUTS)
    last = net.along(x)[0][0, -1]
    inside, outside = x.clone(), x.clone()
    inside[0, t - context] += 1.0  # the oldest event of the window
    outside[0, t - context - 1] += 1.0  # the newest event before it
    assert not torch.allclose(net.along(inside)[0][0, -1], last)
    assert torch.equal(net.along(outside)[0][0, -1], last)


@torch.no_grad()
def test_attention_is_causal_and_padding_after_a_sequence_changes_nothing() -> None:
    net = attention()
    x = torch.randn(2, 12, INPUTS)
    states = net.along(x)[0]
    later = x.clone()
    later[:, 8:] = torch.randn(2, 4, INPUTS)
    assert torch.allclose(net.along(later)[0][:, :8], states[:, :8], atol=1e-6)
    assert torch.allclose(net.along(x[:, :5])[0], states[:, :5], atol=1e-6)


@pytest.mark.parametrize("make", [attention, lambda: LSTMEncoder(INPUTS, 8).eval()])
@torch.no_grad()
def test_advancing_event_by_event_equals_one_pass(make) -> None:
    net = make()
    x = torch.randn(3, 15, INPUTS)
    lengths = torch.tensor([15, 9, 1])
    states = net.along(x)[0]
    state = None
    for step in range(15):
        going = lengths > step  # rows whose sequence has this step
        moved = net.advance(x[:, step : step + 1], torch.ones(3, dtype=torch.long), state)
        if state is None:
            state = moved
        else:
            pairs = zip(moved, state, strict=True)
            state = tuple(torch.where(going[:, None], m, s) for m, s in pairs)
    for row, n in enumerate(lengths):
        assert torch.allclose(state[0][row], states[row, n - 1], atol=1e-5)
    # several steps at once, from a stored state, land on the same state
    first = net.advance(x[:, :4], torch.full((3,), 4), None)
    rest = net.advance(x[:, 4:], torch.full((3,), 11), first)
    assert torch.allclose(rest[0], states[:, -1], atol=1e-5)
