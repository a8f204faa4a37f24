"""The helpers every tier shares."""

from tests.support import free_port


def test_free_ports_are_never_handed_out_twice():
    # The kernel's probe-and-close repeats ports: 500 plain probes here repeated 7 to 12 of them. On CI
    # two calls in a row got the same one, and `ray start` refused a node with two agents on one port.
    ports = [free_port() for _ in range(500)]
    assert len(set(ports)) == len(ports)
