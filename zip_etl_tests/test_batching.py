"""How a backfill's zip codes are cut into runs."""

from dagster import PartitionKeyRange

from zip_etl.cli.local_runs import Target
from zip_etl.partitions import ZIP_CODES, partition_ranges, zip_code_partitions


def test_ranges_are_contiguous_bounded_and_cover_every_key_once():
    ranges = partition_ranges(ZIP_CODES, 2000)
    assert len(ranges) == 21
    assert all(len(r) <= 2000 for r in ranges)
    assert [k for r in ranges for k in r] == ZIP_CODES
    for r in ranges:  # each run is a contiguous range of the partition order
        assert zip_code_partitions.get_partition_keys_in_range(PartitionKeyRange(r[0], r[-1])) == r


def test_row_budget_splits_heavy_ranges_and_keeps_a_giant_zip_code_alone():
    keys = ["00501", "00544", "01001", "01002", "01003", "01004"]
    rows = {"00501": 10, "00544": 10, "01001": 500, "01002": 10, "01003": 10, "01004": 10}
    assert partition_ranges(keys, 2000, rows, max_rows=100) == [
        ["00501", "00544"], ["01001"], ["01002", "01003", "01004"]
    ]
    assert partition_ranges(keys, 2, rows, max_rows=10_000) == [["00501", "00544"], ["01001", "01002"], ["01003", "01004"]]


def test_zip_code_partitions_lookups_match_dagsters_semantics():
    assert zip_code_partitions.has_partition_key("00501")
    assert not zip_code_partitions.has_partition_key("501")
    assert zip_code_partitions.get_partition_keys_in_range(PartitionKeyRange("00501", "00501")) == ["00501"]
    import pytest
    from dagster import DagsterInvalidInvocationError

    with pytest.raises(DagsterInvalidInvocationError, match="'00000' is not a partition key; the partitions are"):
        zip_code_partitions.get_partition_keys_in_range(PartitionKeyRange("00000", "00501"))
    # A one-partition run is the range from a key to itself: the unknown key is named once.
    with pytest.raises(DagsterInvalidInvocationError) as raised:
        zip_code_partitions.get_partition_keys_in_range(PartitionKeyRange("ABCDE", "ABCDE"))
    assert str(raised.value) == ("'ABCDE' is not a partition key: the partitions are the 41,749 active US zip codes, "
                                 "as 5-digit strings from 00501 to 99950.")


def test_target_run_config_carries_resource_overrides():
    target = Target("cleaned_companies", resources=(("postgres", (("raw_schema", "bench"),)),))
    config = target.run_config()
    assert config["resources"] == {"postgres": {"config": {"raw_schema": "bench"}}}
    assert config["loggers"]["console"]["config"]["log_level"] == "WARNING"


def test_zip_code_cache_is_written_once_reused_and_rebuilt_when_damaged(tmp_path, monkeypatch):
    from zip_etl import settings
    from zip_etl.partitions import _zip_codes_from_package, active_zip_codes, zip_codes_cache_path

    monkeypatch.setenv(settings.HOME, str(tmp_path))
    path = zip_codes_cache_path()
    assert not path.exists()
    assert active_zip_codes() == _zip_codes_from_package() == ZIP_CODES
    assert path.read_text().split()[0] == str(len(ZIP_CODES))

    path.write_text("3\n00501\n00544\n")  # count says 3, two keys: a damaged file is not trusted
    assert active_zip_codes() == ZIP_CODES
    path.write_text("2\n00501\n99999\n")  # a consistent file is the cache (never hand-edit it)
    assert active_zip_codes() == ["00501", "99999"]
