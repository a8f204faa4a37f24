import json

import pytest

from actors.errors import SourceError
from actors.intake.sources import SourceSpec, count_records, read_records
from actors.models import JewelryOrder, RejectedRecord
from tests.conftest import order_dict


def _write_jsonl(path, lines):
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n", encoding="utf-8")
    return path


def test_bad_lines_are_rejected_with_line_and_field_and_the_rest_still_reads(tmp_path):
    bad_carat = order_dict(
        0, order_id="J2025010", gemstones=[{"kind": "diamond", "carat": -1, "colour": "G", "clarity": "VS1"}]
    )
    path = _write_jsonl(
        tmp_path / "orders.jsonl",
        [
            order_dict(0),
            "{not json",
            bad_carat,
            "[1, 2]",
            order_dict(1),
            order_dict(2, metal="unobtainium"),
        ],
    )
    records = list(read_records(SourceSpec(path=path)))
    orders = [r for r in records if isinstance(r, JewelryOrder)]
    rejects = {r.line: r for r in records if isinstance(r, RejectedRecord)}
    assert [o.order_id for o in orders] == ["J2025001", "J2025002"]
    assert sorted(rejects) == [2, 3, 4, 6]
    assert rejects[2].errors[0].field == "<json>" and "malformed JSON" in rejects[2].errors[0].reason
    assert rejects[3].order_id == "J2025010" and rejects[3].errors[0].field == "gemstones.0.carat"
    assert rejects[4].errors[0].field == "<record>"
    assert rejects[6].errors[0].field == "metal"
    assert "orders.jsonl line 3 (order J2025010): gemstones.0.carat" in rejects[3].message
    assert rejects[3].raw == bad_carat  # kept whole: nothing is lost


def test_duplicate_order_ids_after_the_first_are_rejected(tmp_path):
    path = _write_jsonl(tmp_path / "orders.jsonl", [order_dict(0), order_dict(1), order_dict(0)])
    records = list(read_records(SourceSpec(path=path)))
    assert isinstance(records[2], RejectedRecord)
    assert records[2].errors[0].field == "order_id" and "line 1" in records[2].errors[0].reason


def test_csv_rows_nest_dotted_columns_and_parse_gemstones(tmp_path):
    header = (
        "order_id,product_type,metal,jade_grade,gemstones,style,size,customer,"
        "destination.city,destination.country,declared_value,created_at"
    )
    rows = [
        'J2025101,ring,18K,,"[{""kind"": ""diamond"", ""carat"": 0.2, ""colour"": ""F"", ""clarity"": ""VS2""}]",'
        "plain band,7,Li Na,Shanghai,CN,5200,2025-02-01T10:00:00+08:00",
        "J2025102,bangle,,A,,retro round bar,300,Wu Lei,Beijing,CN,90000,2025-02-01T10:00:00+08:00",
        "J2025103,pendant,PT950,,,teardrop,18,Xu Min,Paris,FR,4200,2025-02-01T10:00:00+08:00",
    ]
    path = tmp_path / "orders.csv"
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    records = list(read_records(SourceSpec(path=path)))
    assert records[0].gemstones[0].carat == 0.2 and records[0].destination.city == "Shanghai"
    assert isinstance(records[1], RejectedRecord) and records[1].line == 3 and records[1].errors[0].field == "size"
    assert records[2].destination.country == "FR"
    assert count_records(SourceSpec(path=path)) == 3


def test_csv_with_a_missing_column_rejects_each_row_naming_the_field(tmp_path):
    path = tmp_path / "orders.csv"
    path.write_text("order_id,product_type,metal,style,size\nJ2025201,ring,AU750,plain band,7\n", encoding="utf-8")
    (record,) = read_records(SourceSpec(path=path))
    assert isinstance(record, RejectedRecord)
    assert {"customer", "destination", "declared_value", "created_at"} <= {e.field for e in record.errors}


def test_a_missing_file_is_a_source_error(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        list(read_records(SourceSpec(path=tmp_path / "nope.jsonl")))


def test_an_empty_file_yields_nothing(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("", encoding="utf-8")
    assert list(read_records(SourceSpec(path=path))) == []


def test_generated_orders_start_with_the_originals_and_are_reproducible():
    first = list(read_records(SourceSpec(count=300, seed=9)))
    again = list(read_records(SourceSpec(count=300, seed=9)))
    other = list(read_records(SourceSpec(count=300, seed=10)))
    assert [o.order_id for o in first[:3]] == ["J2025001", "J2025002", "J2025003"]
    assert first == again and first[3:] != other[3:]
    assert len({o.order_id for o in first}) == 300
    certificates = [str(g.certificate) for o in first for g in o.gemstones if g.certificate]
    assert len(certificates) == len(set(certificates)) > 20
    assert {o.product_type for o in first} == {"ring", "bangle", "necklace", "pendant", "earrings"}


def test_a_source_is_either_a_file_or_a_count(tmp_path):
    with pytest.raises(ValueError):
        SourceSpec(path=tmp_path / "x.jsonl", count=3)
