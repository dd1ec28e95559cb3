"""verify detects every kind of tampering and names the first bad seq and file."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ingest.checkpoints import read_checkpoints
from ingest.fsio import read_lines
from ingest.pipeline import Ingestor
from ingest.segments import live_segments
from ingest.signing import Signer
from ingest.verify import verify
from tests.conftest import make_event

PER_SEGMENT = 50


@pytest.fixture
def store(config):
    config.storage.checkpoint_every_events = PER_SEGMENT
    with Ingestor.open(config, "local", direct=True) as ing:
        for b in range(3):
            res = ing.submit([make_event(b * PER_SEGMENT + i) for i in range(PER_SEGMENT)], source="test")
            assert res.stored == PER_SEGMENT
    rep = verify(config.layout)
    assert rep.ok, rep.to_dict()
    assert rep.events == 3 * PER_SEGMENT
    return config.layout


def _segment(layout, index):
    return live_segments(layout, "local")[index]


def _rewrite(layout, index, fn):
    info = _segment(layout, index)
    path = layout.lake / info.path
    table = pq.read_table(path).sort_by("seq")
    rows = table.to_pylist()
    rows = fn(rows)
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), path)
    return info


def _first_bad(layout):
    rep = verify(layout, save=False)
    assert not rep.ok
    chain = rep.chains[0]
    return chain.first_bad


def test_edited_typed_column(store):
    def edit(rows):
        rows[7]["principal"] = "mallory"
        return rows
    info = _rewrite(store, 1, edit)
    bad = _first_bad(store)
    assert (bad.kind, bad.seq, bad.file) == ("column_mismatch", 57, info.path)
    assert "principal" in bad.detail


@pytest.mark.parametrize("column,value", [("tool", "rm_rf"), ("decision", "deny"), ("ts", None),
                                           ("source", "elsewhere"), ("latency_ms", 1.5)])
def test_edited_any_typed_column(store, column, value):
    def edit(rows):
        rows[3][column] = value if column != "ts" else rows[3]["ts"].replace(year=2020)
        return rows
    info = _rewrite(store, 0, edit)
    bad = _first_bad(store)
    assert (bad.kind, bad.seq, bad.file) == ("column_mismatch", 3, info.path)


def test_edited_record(store):
    def edit(rows):
        rows[10]["record"] = rows[10]["record"].replace("invoice lookup", "invoice lookuq")
        return rows
    info = _rewrite(store, 2, edit)
    bad = _first_bad(store)
    assert (bad.kind, bad.seq, bad.file) == ("hash_mismatch", 110, info.path)


def test_deleted_row(store):
    info = _rewrite(store, 1, lambda rows: rows[:20] + rows[21:])
    bad = _first_bad(store)
    assert (bad.kind, bad.seq, bad.file) == ("deleted_row", 70, info.path)


def test_inserted_row(store):
    def insert(rows):
        fake = dict(rows[5])
        fake["record"] = fake["record"].replace("invoice lookup", "forged entry")
        return rows[:6] + [fake] + rows[6:]
    info = _rewrite(store, 0, insert)
    bad = _first_bad(store)
    assert bad.seq == 6 and bad.file == info.path and bad.kind == "inserted_row"


def test_swapped_rows(store):
    def swap(rows):
        for col in ("record", "prev_hash", "hash", "event_id", "session", "principal", "ts", "received_at"):
            rows[12][col], rows[13][col] = rows[13][col], rows[12][col]
        return rows
    info = _rewrite(store, 1, swap)
    bad = _first_bad(store)
    assert bad.seq == 62 and bad.file == info.path


def test_deleted_segment_file(store):
    info = _segment(store, 1)
    (store.lake / info.path).unlink()
    bad = _first_bad(store)
    assert (bad.kind, bad.seq, bad.file) == ("missing_segment", 50, info.path)


def test_truncated_segment_file(store):
    info = _segment(store, 0)
    path = store.lake / info.path
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    bad = _first_bad(store)
    assert (bad.kind, bad.seq, bad.file) == ("unreadable_segment", 0, info.path)


def test_tail_removed_after_last_checkpoint(store):
    info = _segment(store, 2)
    (store.lake / info.path).unlink()
    manifest = store.manifest("local")
    lines = read_lines(manifest)
    manifest.write_bytes(b"\n".join(lines[:-1]) + b"\n")  # the attacker also edits the manifest
    bad = _first_bad(store)
    assert (bad.kind, bad.seq) == ("truncated_tail", 100)


def test_forged_checkpoint(store):
    cps, _ = read_checkpoints(store.checkpoints("local"))
    forged = cps[-1].model_copy(update={"root": "00" * 32})
    with open(store.checkpoints("local"), "ab") as fh:
        fh.write(forged.model_dump_json().encode() + b"\n")
    rep = verify(store, save=False)
    assert not rep.ok
    assert any(p.kind == "checkpoint_forged" for p in rep.chains[0].problems)


def test_checkpoint_signed_by_another_key(store, tmp_path):
    other = Signer.load(tmp_path / "otherkeys")
    cps, _ = read_checkpoints(store.checkpoints("local"))
    cp = cps[-1]
    fake = other.sign("local", cp.size, cp.root, cp.head, cp.time)
    with open(store.checkpoints("local"), "ab") as fh:
        fh.write(fake.model_dump_json().encode() + b"\n")
    rep = verify(store, save=False)
    assert any(p.kind == "checkpoint_forged" for p in rep.chains[0].problems)


def test_fork_two_roots_for_one_size(store):
    signer = Signer.load(store.keys)
    cps, _ = read_checkpoints(store.checkpoints("local"))
    cp = cps[0]
    fork = signer.sign("local", cp.size, "ab" * 32, cp.head, cp.time)
    with open(store.checkpoints("local"), "ab") as fh:
        fh.write(fork.model_dump_json().encode() + b"\n")
    rep = verify(store, save=False)
    kinds = {p.kind for p in rep.chains[0].problems}
    assert "fork" in kinds and "checkpoint_root_mismatch" in kinds


def test_rollback_of_whole_data_dir_detected_with_exported_checkpoints(config, tmp_path):
    export = tmp_path / "export"
    config.storage.checkpoint_export = str(export)
    config.storage.checkpoint_every_events = PER_SEGMENT
    with Ingestor.open(config, "local", direct=True) as ing:
        ing.submit([make_event(i) for i in range(PER_SEGMENT)], source="test")
    layout = config.layout
    snapshot = {p: p.read_bytes() for p in layout.root.rglob("*") if p.is_file()}
    with Ingestor.open(config, "local", direct=True) as ing:
        ing.submit([make_event(1000 + i) for i in range(PER_SEGMENT)], source="test")
    for p in list(layout.root.rglob("*")):  # roll the data dir back to the snapshot
        if p.is_file() and p not in snapshot:
            p.unlink()
    for p, data in snapshot.items():
        p.write_bytes(data)
    assert verify(layout, save=False).ok  # the rolled-back dir is self-consistent...
    rep = verify(layout, checkpoints_from=str(export), save=False)
    assert not rep.ok  # ...but the exported checkpoints prove events are missing
    assert rep.chains[0].first_bad.kind == "truncated_tail"
    assert rep.chains[0].first_bad.seq == PER_SEGMENT


def test_unsigned_tail_reported(config):
    config.storage.checkpoint_every_events = 10_000
    config.storage.checkpoint_every_seconds = 3600
    ing = Ingestor.open(config, "local", direct=True)
    ing.submit([make_event(i) for i in range(30)], source="test")
    ing.submit([make_event(100 + i) for i in range(20)], source="test")
    rep = verify(config.layout, save=False)
    assert rep.ok
    assert rep.chains[0].events == 50
    assert rep.chains[0].unsigned_tail == 50  # first checkpoint is signed on close
    ing.close()
    rep = verify(config.layout, save=False)
    assert rep.chains[0].unsigned_tail == 0 and rep.chains[0].signed_size == 50


def _sign_inside_segment(layout, size, root_hex=None):
    """Sign a checkpoint at a size that falls inside a segment (the root of the first `size`
    stored records unless root_hex is given)."""
    from ingest.merkle import leaf_hash, root

    rows = [r for info in live_segments(layout, "local") for r in pq.read_table(layout.lake / info.path)
            .sort_by("seq").select(["hash", "record"]).to_pylist()][:size]
    good = root([leaf_hash(r["record"].encode()) for r in rows]).hex()
    cp = Signer.load(layout.keys).sign("local", size, root_hex or good, rows[-1]["hash"], "2026-01-01T00:00:00.000000Z")
    with open(layout.checkpoints("local"), "ab") as fh:
        fh.write(cp.model_dump_json().encode() + b"\n")
    return good


def test_right_root_signed_inside_a_segment_verifies(store):
    _sign_inside_segment(store, 75)
    rep = verify(store, save=False)
    assert rep.ok, rep.to_dict()
    assert rep.chains[0].checkpoints == 4


def test_wrong_root_signed_inside_a_segment(store):
    good = _sign_inside_segment(store, 75, root_hex="cd" * 32)
    assert good != "cd" * 32
    bad = _first_bad(store)
    assert (bad.kind, bad.seq, bad.file) == ("checkpoint_root_mismatch", 74, _segment(store, 1).path)


def test_worker_pool_reports_what_one_process_reports(store):
    """The pool path (forkserver workers, results merged out of order) names the same problems."""
    assert verify(store, save=False, workers=2).ok
    _sign_inside_segment(store, 120, root_hex="ab" * 32)

    def edit(rows):
        rows[30]["record"] = rows[30]["record"].replace("invoice lookup", "invoice lookuq")
        return rows
    _rewrite(store, 2, edit)
    one = verify(store, save=False, workers=1).to_dict()
    two = verify(store, save=False, workers=2).to_dict()
    for rep in (one, two):
        del rep["seconds"], rep["verified_at"]
    assert one == two
    kinds = [(p["kind"], p["seq"]) for p in one["chains"][0]["problems"]]
    assert kinds == [("checkpoint_root_mismatch", 119), ("hash_mismatch", 130)]


def test_clean_segments_take_the_fast_path(store, monkeypatch):
    import ingest.verify as verify_mod

    def no_exact(*args, **kwargs):
        raise AssertionError("a clean segment fell back to the exact row-by-row check")
    monkeypatch.setattr(verify_mod, "_exact_check", no_exact)
    assert verify(store, save=False).ok


_OTHER_VALUE = {"event_id": "ev-forged", "received_at": None, "agent": "other-agent", "session": "s-other",
                "server": "other", "result": "error", "scope_checked": "admin:*", "result_bytes": 999_999,
                "chain_id": "elsewhere", "principal": None, "latency_ms": None}


@pytest.mark.parametrize("column", sorted(_OTHER_VALUE))
def test_every_typed_column_is_cross_checked(store, column):
    def edit(rows):
        value = _OTHER_VALUE[column]
        if column == "received_at":
            value = rows[4]["received_at"].replace(year=2001)
        rows[4][column] = value
        return rows
    info = _rewrite(store, 1, edit)
    bad = _first_bad(store)
    assert (bad.kind, bad.seq, bad.file) == ("column_mismatch", 54, info.path)
    assert column in bad.detail


def _small_row_groups(layout, index, fn=lambda rows: rows):
    """Rewrite a segment with 8-row row groups (a big compacted segment in miniature)."""
    info = _segment(layout, index)
    path = layout.lake / info.path
    table = pq.read_table(path).sort_by("seq")
    pq.write_table(pa.Table.from_pylist(fn(table.to_pylist()), schema=table.schema), path, row_group_size=8)
    return info


@pytest.mark.parametrize("tamper", ["none", "column", "record"])
def test_big_segments_split_over_workers_report_the_same(store, monkeypatch, tamper):
    """Segments too big to balance have their typed-column check split into row-group jobs."""
    import ingest.verify as verify_mod

    def edit(rows):
        if tamper == "column":
            rows[37]["tool"] = "rm_rf"
        elif tamper == "record":
            rows[37]["record"] = rows[37]["record"].replace("invoice lookup", "invoice lookuq")
        return rows
    infos = [_small_row_groups(store, i, edit if i == 1 else (lambda rows: rows)) for i in range(3)]
    monkeypatch.setattr(verify_mod, "SPLIT_MIN_ROWS", 1)  # every segment here is > 1/4 of the rows
    split = verify(store, save=False, workers=2).to_dict()
    monkeypatch.setattr(verify_mod, "SPLIT_MIN_ROWS", 10**12)
    whole = verify(store, save=False, workers=2).to_dict()
    for rep in (split, whole):
        del rep["seconds"], rep["verified_at"]
    assert split == whole
    if tamper == "none":
        assert split["ok"]
    else:
        chain = split["chains"][0]
        want = "column_mismatch" if tamper == "column" else "hash_mismatch"
        assert (chain["problems"][0]["kind"], chain["first_bad_seq"], chain["first_bad_file"]) == (want, 87, infos[1].path)
