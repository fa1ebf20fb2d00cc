"""``redis_url`` in each form it takes: direct, TLS with an ACL user, Sentinel; the broker and the
store read the same setting, and a bad one stops start-up naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest
from kombu.transport import redis as kombu_redis
from redis.sentinel import SentinelConnectionPool

from config.redis_url import SentinelTarget, broker, check
from config.settings import ConfigError
from connectors.registry import load_settings
from tests.conftest import settings_data
from worker import sentinel_broker
from worker.celery_app import make_celery
from worker.redis_client import BlockingSentinelPool, connect


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "redis://deskgate:s3cret@redis.internal:6379/2",
        "rediss://deskgate:s3cret@redis.internal:6380/0?ssl_cert_reqs=required&ssl_ca_certs=/ca.pem",
        "unix:///run/redis.sock?db=1",
    ],
)
def test_a_direct_url_is_used_as_it_is(url: str) -> None:
    assert check(url) is None
    assert broker(url) == (url, {})


def test_a_sentinel_url_names_the_sentinels_the_master_and_the_data_nodes_user() -> None:
    url = "sentinel://deskgate:p%40ss@s1.internal:26379,s2.internal:26380,[::1]/3?master=dg"
    assert check(url) == SentinelTarget(
        sentinels=(("s1.internal", 26379), ("s2.internal", 26380), ("::1", 26379)),
        master="dg",
        db=3,
        username="deskgate",
        password="p@ss",
    )


def test_the_broker_gets_kombus_sentinel_form_with_the_master_as_a_transport_option() -> None:
    url, options = broker("sentinel://deskgate:pw@s1:26379,s2:26380/3?master=dg")
    assert url == "sentinel://deskgate:pw@s1:26379/3;sentinel://deskgate:pw@s2:26380/3"
    assert options == {"master_name": "dg"}


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("sentinel://s1:26379/0", "needs ?master=NAME"),
        ("sentinel://s1:26379/0?master=", "needs ?master=NAME"),
        ("sentinel://s1:26379/0?master=dg&ssl=true", "unknown: ssl"),
        ("sentinel://s1:port/0?master=dg", "port must be a number"),
        ("sentinel://s1,/0?master=dg", "host:port of each sentinel"),
        ("sentinel://s1/zero?master=dg", "must be a number"),
        ("redis-cluster://r1:7000", "Redis Cluster is not supported"),
        ("127.0.0.1:6379", "got no scheme"),
    ],
)
def test_a_bad_url_stops_start_up_naming_the_field_and_never_the_password(
    url: str, said: str
) -> None:
    data = settings_data()
    data["redis_url"] = url.replace("://", "://deskgate:hunter2-password@", 1)
    with pytest.raises(ConfigError) as refused:
        load_settings(**data)
    assert "redis_url" in str(refused.value)
    assert said in str(refused.value)
    assert "hunter2" not in str(refused.value)


def test_the_celery_broker_and_the_store_both_go_through_the_sentinels() -> None:
    data = settings_data()
    data["redis_url"] = "sentinel://deskgate:pw@s1:26379,s2:26380/3?master=dg"
    settings = load_settings(**data)
    app = make_celery(settings)
    try:
        assert app.conf.broker_transport_options["master_name"] == "dg"
        assert app.conf.broker_transport_options["visibility_timeout"] == 3600
        with app.connection_for_write() as connection:
            # kombu's Sentinel transport, as mended in worker/sentinel_broker.py
            assert connection.transport_cls == sentinel_broker.TRANSPORT
            assert issubclass(type(connection.transport), kombu_redis.SentinelTransport)
            assert [alt.split("@")[-1] for alt in connection.alt] == ["s1:26379/3", "s2:26380/3"]
    finally:
        app.close()
    for blocking, pool_class in ((True, BlockingSentinelPool), (False, SentinelConnectionPool)):
        client = connect(settings.redis_url, blocking=blocking, max_connections=4)
        pool = client.connection_pool
        assert type(pool) is pool_class
        assert isinstance(pool, SentinelConnectionPool)
        assert pool.service_name == "dg"
        assert pool.connection_kwargs["db"] == 3
        assert pool.connection_kwargs["username"] == "deskgate"
        # The data nodes' password is not the sentinels' (they are asked without one).
        sentinel = pool.sentinel_manager.sentinels[0]
        assert sentinel.connection_pool.connection_kwargs.get("password") is None


def test_every_product_redis_client_goes_through_connect() -> None:
    """A client built from the URL by hand cannot read a ``sentinel://`` URL: setup's audit
    event and beat's lock each did, and the Sentinel fault scenario failed at set-up."""
    root = Path(__file__).resolve().parents[2]
    by_hand = [
        f"{path.relative_to(root)}:{n}"
        for package in ("config", "connectors", "webhooks", "worker")
        for path in sorted((root / package).rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if "Redis.from_url(" in line and path.name != "redis_client.py"
    ]
    assert by_hand == []
