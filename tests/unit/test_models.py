from decimal import Decimal

import pytest
from pydantic import ValidationError

from actors.intake.samples import original_orders
from actors.models import JewelryOrder, Metal, OrderOutcome, OrderStatus, StageName, StageResult, StageStatus
from tests.conftest import make_order, order_dict


def _fields(error: ValidationError) -> set[str]:
    return {".".join(str(p) for p in e["loc"]) for e in error.errors()}


def test_the_three_original_orders_are_expressible():
    ring, bangle, necklace = original_orders()
    assert (ring.product_type, ring.metal, ring.style) == ("ring", Metal.AU750, "classic six-prong")
    assert ring.gemstones[0].certificate.lab == "GIA" and ring.gemstones[0].carat == 0.5
    assert (bangle.product_type, bangle.jade_grade, bangle.metal, bangle.style) == (
        "bangle",
        "A",
        None,
        "retro round bar",
    )
    assert (necklace.metal, necklace.size, necklace.style) == (Metal.PT950, 450, "minimal collarbone chain")


@pytest.mark.parametrize("alias", ["18K", "18k gold", "au750", "AU750"])
def test_metal_aliases_resolve_to_the_hallmark(alias):
    assert make_order(0, metal=alias).metal is Metal.AU750


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"metal": "unobtainium"}, "metal"),
        ({"order_id": "X1"}, "order_id"),
        ({"size": 40}, "size"),
        ({"declared_value": "-5"}, "declared_value"),
        ({"created_at": "2025-01-15T09:00:00"}, "created_at"),
        ({"product_type": "tiara"}, "product_type"),
        ({"gemstones": [{"kind": "diamond", "carat": -0.2, "colour": "G", "clarity": "VS1"}]}, "gemstones.0.carat"),
        ({"gemstones": [{"kind": "diamond", "carat": 0.2, "colour": "G", "clarity": "VS9"}]}, "gemstones.0.clarity"),
        (
            {"gemstones": [{"kind": "diamond", "carat": 0.2, "colour": "purple", "clarity": "VS1"}]},
            "gemstones.0.colour",
        ),
        (
            {"gemstones": [{"kind": "diamond", "carat": 0.8, "colour": "G", "clarity": "VS1"}]},
            "gemstones.0.certificate",
        ),
        (
            {
                "gemstones": [
                    {
                        "kind": "diamond",
                        "carat": 0.8,
                        "colour": "G",
                        "clarity": "VS1",
                        "certificate": {"lab": "GIA", "number": "12AB"},
                    }
                ]
            },
            "gemstones.0.certificate.number",
        ),
        ({"unexpected": 1}, "unexpected"),
    ],
)
def test_bad_fields_are_named(changes, field):
    with pytest.raises(ValidationError) as caught:
        JewelryOrder.model_validate(order_dict(0, **changes))
    assert field in _fields(caught.value)


def test_an_order_needs_a_metal_or_jade():
    with pytest.raises(ValidationError, match="needs a metal, a jade grade"):
        JewelryOrder.model_validate(order_dict(1, jade_grade=None))


def test_two_stones_cannot_share_a_certificate():
    stone = {
        "kind": "diamond",
        "carat": 0.5,
        "colour": "G",
        "clarity": "VS1",
        "certificate": {"lab": "GIA", "number": "2141438167"},
    }
    with pytest.raises(ValidationError) as caught:
        JewelryOrder.model_validate(order_dict(0, gemstones=[stone, stone]))
    assert "gemstones" in _fields(caught.value)


def test_orders_round_trip_through_json(ring):
    assert JewelryOrder.model_validate_json(ring.model_dump_json()) == ring
    assert ring.declared_value == Decimal("28800.00")


def _result(stage, status, reason=None):
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    return StageResult(
        order_id="J2025001",
        stage=stage,
        status=status,
        reason=reason,
        started_at=now,
        finished_at=now,
        replica=f"{stage}-0",
        node_id="n",
    )


def test_fan_in_keeps_sibling_results_when_one_stage_fails(ring):
    from datetime import UTC, datetime

    results = [_result(s, StageStatus.OK) for s in StageName if s is not StageName.QUALITY]
    results.append(_result(StageName.QUALITY, StageStatus.BUSINESS_FAILURE, "QC rejected: fineness"))
    now = datetime.now(UTC)
    outcome = OrderOutcome.from_results(ring, results, now, now)
    assert outcome.status is OrderStatus.FAILED
    assert outcome.failed_stages == (StageName.QUALITY,)
    assert "quality: QC rejected" in outcome.reason
    assert len(outcome.results) == 6
    assert outcome.results[StageName.MATERIAL].status is StageStatus.OK


def test_an_outcome_without_all_six_results_is_refused(ring):
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    with pytest.raises(ValidationError, match="no result from"):
        OrderOutcome(
            order_id=ring.order_id,
            order=ring,
            status=OrderStatus.COMPLETED,
            results={StageName.MATERIAL: _result(StageName.MATERIAL, StageStatus.OK)},
            started_at=now,
            finished_at=now,
            latency_ms=0,
        )


def test_a_failed_stage_result_must_say_why():
    with pytest.raises(ValidationError, match="must say why"):
        _result(StageName.DESIGN, StageStatus.ERROR)


@pytest.mark.parametrize("order", original_orders(), ids=lambda o: o.product_type)
def test_orders_and_outcomes_cross_the_wire_as_json_and_come_back_equal(order):
    """Ray pickles with cloudpickle; our models pickle as their JSON (actors/models/wire.py)."""
    import pickle
    from datetime import UTC, datetime

    from ray import cloudpickle

    from actors.models import STAGES, EncodedOutcome
    from actors.models.wire import ModelArray, dumped
    from actors.stages import STAGE_CLASSES, STAGE_CONFIGS, ReplicaContext

    results = [
        STAGE_CLASSES[s](STAGE_CONFIGS[s](), ReplicaContext(f"{s}-0", time_scale=0)).process(order) for s in STAGES
    ]
    now = datetime.now(UTC)
    outcome = OrderOutcome.from_results(order, results, now, now)
    for model in (order, results[1], outcome):
        wire = cloudpickle.dumps(model)
        assert model.model_dump_json().encode() in wire  # its JSON, not a pickled object graph
        back = pickle.loads(wire)
        assert back == model and type(back) is type(model)
    # A batch crosses as one JSON array, joined from each order's JSON made once, and loads as a list.
    assert pickle.loads(cloudpickle.dumps(ModelArray.joined(type(order), [dumped(order)] * 2))) == [order, order]
    assert pickle.loads(cloudpickle.dumps(ModelArray.of(StageResult, results))) == results
    # An outcome crosses from the Dispatcher to the driver as its JSON line, decoded only at the end.
    encoded = pickle.loads(cloudpickle.dumps(EncodedOutcome.of(outcome)))
    assert encoded.order_id == outcome.order_id and encoded.json == outcome.model_dump_json()
    assert encoded.decoded() == outcome
