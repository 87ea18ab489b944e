"""read_through (used by `retrocohort check`) and the header checks: damaged files are named, never a traceback."""

from __future__ import annotations

import gzip

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from retrocohort.errors import SourceError
from retrocohort.sources.mimic_iv import MimicIV, read_through

ROWS = "".join(f"{i},{i % 7},2150-01-01 10:00:00\n" for i in range(20000))


def gz(path, text: str) -> bytes:
    data = gzip.compress(text.encode())
    path.write_bytes(data)
    return data


def test_complete_files_are_read_to_the_end_with_progress(tmp_path):
    data = gz(tmp_path / "t.csv.gz", "subject_id,itemid,charttime\n" + ROWS)
    seen: list[int] = []
    assert read_through(tmp_path / "t.csv.gz", on_bytes=seen.append, chunk=4096) == len(data)
    assert sum(seen) == len(data) and len(seen) > 1
    table = pa.table({"a": list(range(1000))})
    pq.write_table(table, tmp_path / "t.parquet", row_group_size=100)
    assert read_through(tmp_path / "t.parquet") == (tmp_path / "t.parquet").stat().st_size


@pytest.mark.parametrize("cut", [0.5, 0.99])
def test_a_cut_gz_is_named(tmp_path, cut):
    path = tmp_path / "labevents.csv.gz"
    data = gz(path, "subject_id,itemid,charttime\n" + ROWS)
    path.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(SourceError, match="ends early or is damaged") as info:
        read_through(path)
    assert str(path) in str(info.value) and "download it again" in str(info.value)


def test_a_gz_with_a_bad_checksum_is_named(tmp_path):
    path = tmp_path / "t.csv.gz"
    data = bytearray(gz(path, "subject_id,itemid,charttime\n" + ROWS))
    data[-8] ^= 0xFF  # the CRC-32 in the trailer: only a read to the end sees it
    path.write_bytes(bytes(data))
    with pytest.raises(SourceError, match=str(path)):
        read_through(path)


def test_a_cut_parquet_file_is_named(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"a": list(range(1000))}), path)
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(SourceError, match="not a complete Parquet file") as info:
        read_through(path)
    assert str(path) in str(info.value)


def test_duplicate_header_is_named_case_insensitively(tmp_path):
    (tmp_path / "hosp").mkdir()
    header = "subject_id,gender,anchor_age,anchor_year,dod,Anchor_Age"
    gz(tmp_path / "hosp" / "patients.csv.gz", header + "\n1,F,50,2150,,50\n")
    with pytest.raises(SourceError, match="more than once") as info:
        MimicIV(tmp_path).locate("hosp/patients")
    assert "'anchor_age'" in str(info.value) and "'Anchor_Age'" in str(info.value)
    assert "patients.csv.gz" in str(info.value)
