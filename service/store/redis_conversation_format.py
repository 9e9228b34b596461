"""How conversations sit in Redis: one format for the sync store and the loop's, so both see one conversation.

Each conversation is three keys with one hash tag (so a cluster keeps them in one slot), written
together by one Lua script and given one time to live, renewed on every use:

- `{prefix}conv:{<id>}`: the marker, so a conversation with no turn yet is known;
- `{prefix}conv:{<id>}:messages`: a list of `ChatMessage.to_dict()` JSON, oldest first;
- `{prefix}conv:{<id>}:ids`: their `chat_message_id`s, in the same order.

A write skips messages whose id is already stored, as the reference store does, which also makes a
retried write (the connection dropped after the script ran) harmless; messages that come without an id
get a random one, so ids never collide after a trim. The trim drops the oldest whole turns in the same
script, so no reader ever sees a conversation over its bound or half a turn. The sync store
(`redis_conversations.py`, for pipelines) and the loop's (`redis_loop_conversations.py`, for the
service) write the same keys the same way.
"""

import json
import secrets
from dataclasses import replace

from haystack.dataclasses import ChatMessage, ChatRole
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from service.store.conversations import MESSAGE_ID

PREFIX = "hs:"  # the run store's too (service/store/redis_keys.py): one namespace to grant, list or flush
CONNECT_TIMEOUT = 1.0  # seconds: a Redis that is gone is noticed quickly, and the request gets a 503
COMMAND_TIMEOUT = 2.0
CLIENT_NAME = "haystream-conversations"  # what CLIENT LIST shows for these connections
UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)

# KEYS: marker, messages, ids. ARGV: ttl ms, max messages, "1" to create it if unknown ("0": only if it
# exists, else -1), then (id, message) pairs. Returns how many messages were written.
WRITE = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  if ARGV[3] == '0' then return -1 end
  redis.call('SET', KEYS[1], '1')
end
local written = 0
for i = 4, #ARGV, 2 do
  if not redis.call('LPOS', KEYS[3], ARGV[i]) then
    redis.call('RPUSH', KEYS[3], ARGV[i])
    redis.call('RPUSH', KEYS[2], ARGV[i + 1])
    written = written + 1
  end
end
local stored, max = redis.call('LLEN', KEYS[2]), tonumber(ARGV[2])
if stored > max then
  local drop = stored - (max - max % 2)
  redis.call('LTRIM', KEYS[2], drop, -1)
  redis.call('LTRIM', KEYS[3], drop, -1)
end
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ARGV[1]) end
return written
"""

# KEYS: marker, messages, ids. ARGV: ttl ms to renew it with, or "0". Returns nil if unknown.
READ = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
if ARGV[1] ~= '0' then
  for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ARGV[1]) end
end
return redis.call('LRANGE', KEYS[2], 0, -1)
"""


def keys(prefix: str, chat_history_id: str) -> list[str]:
    marker = f"{prefix}conv:{{{chat_history_id}}}"
    return [marker, marker + ":messages", marker + ":ids"]


def ttl_ms(ttl: float) -> str:
    return str(max(int(ttl * 1000), 1))


def write_args(ttl: float, max_messages: int, messages: list[ChatMessage], *, create: bool) -> list[str]:
    """WRITE's ARGV: system messages left out (as the reference store does by default), ids given."""
    args = [ttl_ms(ttl), str(max_messages), "1" if create else "0"]
    for message in messages:
        if message.is_from(ChatRole.SYSTEM):
            continue
        if message.meta.get(MESSAGE_ID) is None:
            message = replace(message, _meta={**message.meta, MESSAGE_ID: secrets.token_hex(8)})
        args += [str(message.meta[MESSAGE_ID]), json.dumps(message.to_dict(), ensure_ascii=False)]
    return args


def read_args(ttl: float, *, touch: bool) -> list[str]:
    return [ttl_ms(ttl) if touch else "0"]


def decode(stored: list[bytes] | None) -> list[ChatMessage] | None:
    if stored is None:
        return None
    return [ChatMessage.from_dict(data) for data in json.loads(b"[" + b",".join(stored) + b"]")]  # one parse
