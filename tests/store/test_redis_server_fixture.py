"""The redis-server fixture itself: it answers, keeps nothing on disk, and can be stopped and restarted."""

from pathlib import Path

from tests.support.redis_server import RedisServer


def test_the_server_answers_and_keeps_nothing_on_disk(redis_server: RedisServer, redis_url: str) -> None:
    assert redis_server.ping()
    assert redis_server.command("CONFIG", "GET", "save").endswith(b"$0\r\n\r\n")
    assert b"no" in redis_server.command("CONFIG", "GET", "appendonly")


def test_a_stopped_server_refuses_and_a_restarted_one_answers_on_the_same_port(own_redis: RedisServer) -> None:
    port = own_redis.port
    own_redis.stop()
    assert not own_redis.ping()
    own_redis.start()
    assert own_redis.port == port and own_redis.ping()


def test_stop_ends_the_process(tmp_path: Path) -> None:
    server = RedisServer(tmp_path).start()
    process = server.process
    assert process is not None
    server.stop()
    assert process.poll() is not None
