import math
import struct
from pathlib import Path

import numpy as np
import pytest

from actors.models import ProductType, StageStatus
from actors.models.catalog import SIZE_CONVENTIONS
from actors.models.styles import STYLES, nominal_volume_mm3
from actors.stages import Design, DesignConfig, ReplicaContext
from actors.stages.mesh import cylinder, prism, torus
from tests.conftest import make_order


def test_primitive_volumes_converge_to_the_closed_forms():
    assert torus(10, 1, 1, 256, 64).volume_mm3() == pytest.approx(2 * math.pi**2 * 10, rel=2e-3)
    assert torus(10, 1, 2, 256, 64).volume_mm3() == pytest.approx(2 * math.pi**2 * 10 * 2, rel=2e-3)
    assert cylinder(2, 5, 512).volume_mm3() == pytest.approx(math.pi * 4 * 5, rel=1e-3)
    square = np.array([[0, 0], [4, 0], [4, 3], [0, 3]], dtype=float)
    assert prism(square, 2).volume_mm3() == pytest.approx(24)


@pytest.mark.parametrize("product", list(ProductType))
def test_every_style_meshes_to_a_closed_solid_within_the_reserved_allowance(product):
    design = Design(DesignConfig(write_meshes=False), ReplicaContext("design-0", time_scale=0))
    sizes = SIZE_CONVENTIONS[product]
    for style in STYLES[product]:
        for size in (sizes.minimum, (sizes.minimum + sizes.maximum) / 2, sizes.maximum):
            volume = design._build(product, style, size).volume_mm3
            nominal = nominal_volume_mm3(product, style, size)
            # Inscribed polygons are never larger than the curved solid material reserved for.
            assert 0.75 * nominal < volume <= nominal * 1.001, (style, size)


def test_designs_are_cached_by_type_style_and_size(tmp_path, ring):
    design = Design(DesignConfig(), ReplicaContext("design-0", time_scale=0, artifacts_dir=tmp_path))
    first = design.process(ring).output
    second = design.process(make_order(0, order_id="J2025050")).output
    other = design.process(make_order(0, order_id="J2025051", size=7)).output
    assert (first.cache_hit, second.cache_hit, other.cache_hit) == (False, True, False)
    assert first.design_key == second.design_key != other.design_key
    assert design.snapshot().state["designs_cached"] == 2


def test_the_mesh_is_kept_as_a_binary_stl(tmp_path, ring):
    design = Design(DesignConfig(), ReplicaContext("design-0", time_scale=0, artifacts_dir=tmp_path))
    output = design.process(ring).output
    data = Path(output.mesh_path).read_bytes()
    (count,) = struct.unpack("<I", data[80:84])
    assert count == output.triangles and len(data) == 84 + 50 * count


def test_weights_use_the_material_density(ring, jade_bangle):
    design = Design(DesignConfig(write_meshes=False), ReplicaContext("design-0", time_scale=0))
    gold = design.process(ring).output
    assert gold.metal_weight_g == pytest.approx(gold.volume_mm3 / 1000 * 15.5, rel=1e-3) and gold.jade_weight_g == 0
    jade = design.process(jade_bangle).output
    assert jade.metal_weight_g == 0 and 30 < jade.jade_weight_g < 60  # a 56 mm round-bar jadeite bangle


def test_an_unknown_style_uses_the_house_style(ring):
    design = Design(DesignConfig(write_meshes=False), ReplicaContext("design-0", time_scale=0))
    result = design.process(make_order(0, order_id="J2025060", style="art deco fantasy", gemstones=[]))
    assert result.status is StageStatus.OK and "plain_band" in result.output.design_key
