"""A second table is one defs.yaml: a raw table with column names of its own (`contact_id`,
`modified`, `postcode`, `email_address`) and a transform of its own (zip_etl_tests/contacts/), scaffolded
as `dg scaffold defs` scaffolds it, loaded by Dagster's component loader and materialized end to end:
its rows written, its rejected row quarantined, its checks run, its raw data versions observed."""

import traceback

import dagster as dg
from dagster.components.testing import create_defs_folder_sandbox
from psycopg2 import sql

from zip_etl.components import PartitionedTableCleaning
from zip_etl.dagster_internals import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from zip_etl.provenance import latest_data_versions

DEFS_YAML = """\
type: zip_etl.components.PartitionedTableCleaning

attributes:
  asset: cleaned_contacts
  group: contacts

  source:
    asset: raw_contacts
    table: {schema}.raw_contacts
    columns:
      - {{name: contact_id, type: bigint, nullable: false}}
      - {{name: modified, type: timestamptz, nullable: false}}
      - {{name: postcode, type: text, nullable: false}}
      - {{name: email_address, type: text}}
    partition_column: postcode
    key: contact_id
    updated_at: modified

  transform: zip_etl_tests.contacts.transform.clean_contacts

  target:
    table: {schema}.cleaned_contacts
    columns:
      - {{name: postcode, type: text, nullable: false}}
      - {{name: contact_id, type: bigint, nullable: false}}
      - {{name: email, type: text, nullable: false}}
      - {{name: modified, type: timestamptz, nullable: false}}
    key: [postcode, contact_id]

  partitions: ["94105", "10016", "60601"]
  chunk_rows: 2
"""

# 10016 has three rows, more than a chunk (2): it streams in parts, in one savepoint.
RAW = [
    (1, "10016", "  Ann@Example.COM "),
    (2, "10016", "bob@example.com"),
    (3, "10016", "not an email"),
    (4, "60601", "carol@example.com"),
    (5, "6060", "dave@example.com"),  # under no partition: read by no run, reported by raw_rows_have_partitions
]


def test_a_second_table_from_its_defs_yaml_alone(schema, query):
    query(sql.SQL("CREATE TABLE {} (contact_id bigint NOT NULL, modified timestamptz NOT NULL, postcode text NOT NULL, "
                  "email_address text)").format(sql.Identifier(schema, "raw_contacts")))
    for contact_id, postcode, email in RAW:
        query(sql.SQL("INSERT INTO {} VALUES (%s, now(), %s, %s)").format(sql.Identifier(schema, "raw_contacts")),
              (contact_id, postcode, email))

    with create_defs_folder_sandbox() as sandbox:
        folder = sandbox.scaffold_component(PartitionedTableCleaning, defs_path="cleaned_contacts")
        scaffolded = (folder / "defs.yaml").read_text()
        assert "type: zip_etl.components.partitioned_table_cleaning.PartitionedTableCleaning" in scaffolded
        assert "table: public.raw_contacts" in scaffolded  # named after the folder
        (folder / "defs.yaml").write_text(DEFS_YAML.format(schema=schema))
        with sandbox.build_all_defs() as defs:
            instance = dg.DagsterInstance.ephemeral()
            cleaned_key = dg.AssetKey("cleaned_contacts")
            assets_job = defs.resolve_implicit_global_asset_job_def()
            assert defs.resolve_assets_def(cleaned_key).partitions_def.get_partition_keys() == ["10016", "60601", "94105"]
            result = assets_job.execute_in_process(
                instance=instance, asset_selection=[cleaned_key],
                tags={ASSET_PARTITION_RANGE_START_TAG: "10016", ASSET_PARTITION_RANGE_END_TAG: "94105"},
            )
            observed = defs.resolve_job_def("observe_raw_contacts").execute_in_process(instance=instance)
            assert {job.name for job in defs.resolve_all_job_defs()} >= {"cleaned_contacts_debug", "refresh_cleaned_contacts"}
            assert defs.resolve_sensor_def("refresh_cleaned_contacts")

    assert result.success and observed.success
    written = query(sql.SQL("SELECT postcode, contact_id, email FROM {} ORDER BY 2").format(
        sql.Identifier(schema, "cleaned_contacts")))
    assert written == [("10016", 1, "ann@example.com"), ("10016", 2, "bob@example.com"), ("60601", 4, "carol@example.com")]
    quarantined = query(sql.SQL("SELECT postcode, reason, raw_values->>'contact_id' FROM {}").format(
        sql.Identifier(schema, "cleaned_contacts_quarantine")))
    assert quarantined == [("10016", "invalid_email", "3")]

    facts = {e.partition: {k: v.value for k, v in e.metadata.items()}
             for e in result.asset_materializations_for_node("cleaned_contacts")}
    assert sorted(facts) == ["10016", "60601", "94105"]
    assert {k: facts["10016"][k] for k in ("rows_in", "rows_out", "rows_rejected", "rejected_invalid_email")} == {
        "rows_in": 3, "rows_out": 2, "rows_rejected": 1, "rejected_invalid_email": 1}

    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert set(checks) == {"schema_matches_declaration", "key_is_unique", "required_values_present",
                           "zip_codes_are_partitions", "rows_reconcile", "raw_rows_have_partitions"}
    assert all(checks[name].passed for name in set(checks) - {"raw_rows_have_partitions"}), {
        name: e.metadata for name, e in checks.items() if not e.passed}
    stray = checks["raw_rows_have_partitions"]
    assert not stray.passed and stray.severity == dg.AssetCheckSeverity.WARN
    assert stray.metadata["values"].value == [["6060", 1]]
    assert stray.metadata["checked"].value == "zip codes 10016..94105"

    versions = latest_data_versions(instance, dg.AssetKey("raw_contacts"), dg.DagsterEventType.ASSET_OBSERVATION)
    assert set(versions) == {"10016", "60601", "94105"}
    assert versions["10016"].startswith("3-") and versions["94105"] == "0-empty"


def test_a_defs_yaml_naming_a_column_the_source_lacks_stops_the_load_naming_it(schema):
    broken = DEFS_YAML.format(schema=schema).replace("key: contact_id", "key: id")
    with create_defs_folder_sandbox() as sandbox:
        folder = sandbox.scaffold_component(PartitionedTableCleaning, defs_path="cleaned_contacts")
        (folder / "defs.yaml").write_text(broken)
        try:
            with sandbox.build_all_defs():
                raise AssertionError("the definitions loaded")
        except Exception as error:  # noqa: BLE001 - Dagster wraps the component's error in its own
            message = "".join(traceback.format_exception(error))
    assert "PartitionedTableCleaning cleaned_contacts: source:" in message
    assert "its key column 'id' is not one of its columns" in message
