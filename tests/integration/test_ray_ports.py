"""Ray's own ports refuse a caller without the cluster's token.

Ray 2.60 binds its GCS, raylet and worker gRPC servers to every interface whatever the node address
(checked with `ss -ltnp` on an embedded Ray started with `_node_ip_address="127.0.0.1"`), so the
embedded default cannot keep them on loopback. What stands between them and the network is the
token: these calls, made with gRPC directly as a stranger would, are refused without it and answered
with it. (The README lists the ports a cluster must keep inside its network anyway.)
"""

from __future__ import annotations

import grpc
import pytest
import ray
from ray._private.authentication.grpc_authentication_client_interceptor import (
    _get_authentication_metadata_tuple,
)
from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc, node_manager_pb2, node_manager_pb2_grpc


def _calls(ray_session: None) -> dict[str, tuple[str, object]]:
    node = next(n for n in ray.nodes() if n["Alive"])
    raylet = f"{node['NodeManagerAddress']}:{node['NodeManagerPort']}"
    gcs = ray.get_runtime_context().gcs_address
    return {
        "gcs": (
            gcs,
            lambda channel, **kw: gcs_service_pb2_grpc.JobInfoGcsServiceStub(channel).GetAllJobInfo(
                gcs_service_pb2.GetAllJobInfoRequest(), timeout=10, **kw
            ),
        ),
        "raylet": (
            raylet,
            lambda channel, **kw: node_manager_pb2_grpc.NodeManagerServiceStub(channel).GetSystemConfig(
                node_manager_pb2.GetSystemConfigRequest(), timeout=10, **kw
            ),
        ),
    }


@pytest.mark.parametrize("server", ["gcs", "raylet"])
def test_a_caller_without_the_token_is_refused_and_one_with_it_is_answered(ray_session, server):
    token = _get_authentication_metadata_tuple()
    assert token, "the session's Ray runs with token authentication (Ray 2.60's default)"
    address, call = _calls(ray_session)[server]
    with grpc.insecure_channel(address) as channel:
        with pytest.raises(grpc.RpcError) as refused:
            call(channel)
        assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED, refused.value
        with pytest.raises(grpc.RpcError) as wrong:
            call(channel, metadata=(("authorization", "Bearer " + "0" * 64),))
        assert wrong.value.code() is grpc.StatusCode.UNAUTHENTICATED
        assert call(channel, metadata=token) is not None
