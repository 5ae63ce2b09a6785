"""Whatever bytes a file holds, reading it ends in events or in starcast's own error: never
another exception, never a traceback (the readers and the CLI entry points that use them)."""

import gzip

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from starcast.cli import app
from starcast.data.readers import read_events, read_items
from starcast.errors import StarcastError

LINES = st.lists(st.one_of(
    st.binary(max_size=40),
    st.sampled_from([b'{"reviewerID": "u", "asin": "i", "overall": 5, "unixReviewTime": 9}',
                     b"user,item,rating,ts", b"u1,i1,5,100", b"1\t2\t3\t4", b"PAR1",
                     b'{"asin": "i", "title": "t"}', b"\xef\xbb\xbf", b"", b"\x1f\x8b"]),
), max_size=8)
QUIET = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]


def contents(lines: list[bytes], packed: bool) -> bytes:
    raw = b"\n".join(lines)
    return gzip.compress(raw)[: max(10, len(raw) // 2)] if packed and raw else raw


@settings(max_examples=150, deadline=None, suppress_health_check=QUIET, derandomize=True)
@given(lines=LINES, packed=st.booleans(), name=st.sampled_from(["r.json", "e.csv", "x.gz"]))
def test_any_file_reads_or_fails_with_a_starcast_error(tmp_path, lines, packed, name) -> None:
    path = tmp_path / name
    path.write_bytes(contents(lines, packed))
    for reader in (read_events, read_items):
        try:
            reader(path)
        except StarcastError:
            pass


@settings(max_examples=40, deadline=None, suppress_health_check=QUIET, derandomize=True)
@given(lines=LINES, packed=st.booleans())
def test_any_file_given_to_the_cli_ends_in_a_result_or_a_starcast_error(tmp_path, lines,
                                                                        packed) -> None:
    path = tmp_path / "in.json"
    path.write_bytes(contents(lines, packed))
    for command in (["data", "inspect", str(path)],
                    ["split", str(path), "--out", str(tmp_path / "s")]):
        result = CliRunner().invoke(app, command)
        # (main() turns a StarcastError into its one line and exit 2)
        assert result.exception is None or isinstance(result.exception, (StarcastError,
                                                                         SystemExit)), (
            command, repr(result.exception))
