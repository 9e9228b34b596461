"""Which store `HAYSTREAM_STORE_URL` names: this process (`memory://`) or a shared Redis."""

from service.settings import Settings
from service.store.base import RunStore
from service.store.runs import MemoryRunStore


def store_for(settings: Settings) -> RunStore:
    if settings.store_url == "memory://":
        return MemoryRunStore(settings.runs_max_retained, settings.runs_retention)
    from service.store.redis_runs import RedisRunStore  # redis-py only when it is used

    return RedisRunStore(settings)
