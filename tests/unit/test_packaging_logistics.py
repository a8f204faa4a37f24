from datetime import date
from decimal import Decimal
from pathlib import Path

from actors.ledger import MemoryJournal
from actors.models import StageStatus
from actors.stages import Logistics, LogisticsConfig, Packaging, PackagingConfig, ReplicaContext
from actors.stages.logistics import add_business_days, is_valid_tracking_number, s10_check_digit
from tests.conftest import make_order

ORDERS = [make_order(i % 3, order_id=f"J2027{i:04d}") for i in range(60)]


def test_certificate_serials_are_unique_across_replicas_and_written_out(tmp_path):
    journal = MemoryJournal()  # one workshop, two replicas
    replicas = [
        Packaging(
            PackagingConfig(),
            ReplicaContext(
                f"packaging-{i}", index=i, replica_count=2, time_scale=0, artifacts_dir=tmp_path, journal=journal
            ),
        )
        for i in range(2)
    ]
    outputs = [replicas[i % 2].process(o).output for i, o in enumerate(ORDERS)]
    serials = [o.certificate_serial for o in outputs]
    assert len(set(serials)) == len(serials) == 60
    text = Path(outputs[0].certificate_path).read_text(encoding="utf-8")
    assert serials[0] in text and "GIA 2141438167" in text and "18K gold" in text


def test_a_serial_is_never_reused_after_a_declined_order(ring):
    packing = Packaging(
        PackagingConfig(box_stock={"ring": 1, "bangle": 5}), ReplicaContext("packaging-0", time_scale=0)
    )
    first = packing.process(ring)
    declined = packing.process(make_order(0, order_id="J2025090"))
    after = packing.process(make_order(1, order_id="J2025091"))
    assert declined.status is StageStatus.BUSINESS_FAILURE and "no velvet ring box left" in declined.reason
    assert first.output.certificate_serial.endswith("00000001")
    assert after.output.certificate_serial.endswith("00000002")
    assert packing.snapshot().state["workshop_boxes_left"]["ring"] == 0


def test_s10_check_digit_matches_the_upu_worked_example():
    assert s10_check_digit("47312482") == 9  # RA 47312482 9 GB
    assert is_valid_tracking_number("RA473124829GB")
    assert not is_valid_tracking_number("RA473124828GB")


def test_tracking_numbers_are_unique_across_replicas_and_carry_a_valid_check_digit():
    journal = MemoryJournal()
    replicas = [
        Logistics(
            LogisticsConfig(), ReplicaContext(f"logistics-{i}", index=i, replica_count=3, time_scale=0, journal=journal)
        )
        for i in range(3)
    ]
    numbers = [replicas[i % 3].process(o).output.tracking_number for i, o in enumerate(ORDERS)]
    assert len(set(numbers)) == 60
    assert all(is_valid_tracking_number(n) and n.endswith("CN") for n in numbers)


def test_insurance_and_carrier_follow_value_and_destination(ring, jade_bangle, necklace):
    logistics = Logistics(LogisticsConfig(), ReplicaContext("logistics-0", time_scale=0))
    domestic = logistics.process(ring).output
    assert (domestic.zone, domestic.carrier) == ("domestic", "SF Express")
    assert domestic.insurance_premium == Decimal("86.40")  # 0.3% of 28,800
    valuable = logistics.process(jade_bangle).output  # 168,000 to Hong Kong
    assert (valuable.zone, valuable.carrier, valuable.insurance_premium) == (
        "international",
        "Malca-Amit",
        Decimal("1344.00"),
    )
    assert logistics.process(necklace).output.insurance_premium == Decimal("20.40")


def test_delivery_estimates_skip_weekends():
    assert add_business_days(date(2025, 1, 17), 1) == date(2025, 1, 20)  # Friday + 1 = Monday
    logistics = Logistics(LogisticsConfig(workshop_lead_days=5), ReplicaContext("logistics-0", time_scale=0))
    eta = logistics.process(make_order(0)).output.estimated_delivery  # created Wed 15 Jan, 5 + 1 business days
    assert eta == date(2025, 1, 23)
