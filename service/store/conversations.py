"""The conversation store: haystack-experimental's `ChatMessageStore`, bounded, plus what `Conversations` needs.

Both backends implement the `ChatMessageStore` protocol (count, write, retrieve, delete, delete all,
to_dict/from_dict), so a Haystack pipeline's `ChatMessageRetriever`/`ChatMessageWriter` can be handed
either; `service/answering/conversations.py` uses the few extra calls below, which the protocol lacks:
a conversation that exists with no messages yet (`create`), a read that tells "unknown" from "empty"
(`messages`), and a turn appended only if the conversation still exists (`append_turn`), in one step.

The protocol is synchronous; the service awaits those calls on its event loop (`LoopConversationStore`):
the memory store's are dict operations, run in place (`InPlace`); Redis has a loop-side store of its
own (`service/store/redis_loop_conversations.py`), so no call blocks the loop or waits for a thread.

Both are bounded per conversation (`max_messages`; the oldest whole turns go first) and in count: the
memory store keeps `max_conversations`, least recently used out first; the Redis store
(`service/store/redis_conversations.py`) gives each conversation a time to live instead, renewed
whenever it is used, so an idle one expires on its own on every process at once.

`MemoryConversationStore` keeps the messages in `InMemoryChatMessageStore`. In 0.19 its storage is one
module-level dict shared by every instance, so this store keeps its own record of the ids it owns (in
use order, for eviction) and only ever deletes those; it also numbers messages itself
(`chat_message_id`), because the reference store's counter restarts from the message count and would
collide once old messages have been trimmed.
"""

from collections import OrderedDict
from dataclasses import replace
from typing import Any, Protocol

from haystack import default_from_dict, default_to_dict
from haystack.dataclasses import ChatMessage
from haystack_experimental.chat_message_stores.in_memory import InMemoryChatMessageStore
from haystack_experimental.chat_message_stores.types import ChatMessageStore

MESSAGE_ID = "chat_message_id"  # the meta field the reference store identifies messages by


class ConversationStore(ChatMessageStore, Protocol):
    """Synchronous, like the protocol it extends."""

    max_messages: int

    def create(self, chat_history_id: str) -> None:
        """Known from now on, with no messages (so a follow-up before the first turn ends finds it)."""
        ...

    def messages(self, chat_history_id: str, *, touch: bool = False) -> list[ChatMessage] | None:
        """Its messages, oldest first, or None if unknown; `touch`: it was just used (LRU order, or TTL renewed)."""
        ...

    def append_turn(self, chat_history_id: str, turn: list[ChatMessage]) -> bool:
        """Add a completed turn and trim; False (and nothing written) if it is gone: deleted or evicted."""
        ...

    def forget(self, chat_history_id: str) -> bool:
        """Delete it; False if it was not known."""
        ...

    def close(self) -> None:
        """The app is stopping: what this process holds goes (memory), or its connections do (Redis)."""
        ...


class LoopConversationStore(Protocol):
    """`ConversationStore`'s extra calls, awaited on the event loop."""

    async def create(self, chat_history_id: str) -> None: ...
    async def messages(self, chat_history_id: str, *, touch: bool = False) -> list[ChatMessage] | None: ...
    async def append_turn(self, chat_history_id: str, turn: list[ChatMessage]) -> bool: ...
    async def forget(self, chat_history_id: str) -> bool: ...
    async def close(self) -> None: ...


class InPlace:
    """A store whose calls are cheap enough for the loop (memory), as a `LoopConversationStore`."""

    def __init__(self, store: ConversationStore) -> None:
        self.store = store

    async def create(self, chat_history_id: str) -> None:
        self.store.create(chat_history_id)

    async def messages(self, chat_history_id: str, *, touch: bool = False) -> list[ChatMessage] | None:
        return self.store.messages(chat_history_id, touch=touch)

    async def append_turn(self, chat_history_id: str, turn: list[ChatMessage]) -> bool:
        return self.store.append_turn(chat_history_id, turn)

    async def forget(self, chat_history_id: str) -> bool:
        return self.store.forget(chat_history_id)

    async def close(self) -> None:
        self.store.close()


def keep_count(stored: int, max_messages: int) -> int:
    """How many of the newest `stored` messages to keep: all if within the bound, else whole turns."""
    if stored <= max_messages:
        return stored
    return max_messages - max_messages % 2  # a question with its answer: never half a turn


class MemoryConversationStore:
    """The embedded default: one process's conversations, least recently used evicted first."""

    def __init__(self, max_conversations: int, max_messages: int) -> None:
        self.max_conversations = max_conversations
        self.max_messages = max_messages
        self._store = InMemoryChatMessageStore(skip_system_messages=True, last_k=None)
        self._next_number: OrderedDict[str, int] = OrderedDict()  # id -> next chat_message_id, LRU order

    def __len__(self) -> int:
        return len(self._next_number)

    # The ChatMessageStore protocol.

    def to_dict(self) -> dict[str, Any]:
        """The configuration, not the content (which lives in this process only)."""
        return default_to_dict(self, max_conversations=self.max_conversations, max_messages=self.max_messages)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "MemoryConversationStore":
        return default_from_dict(cls, data)

    def count_messages(self, chat_history_id: str) -> int:
        return self._store.count_messages(chat_history_id) if chat_history_id in self._next_number else 0

    def write_messages(self, chat_history_id: str, messages: list[ChatMessage]) -> int:
        if chat_history_id not in self._next_number:
            self.create(chat_history_id)
        return self._write(chat_history_id, messages)

    def retrieve_messages(self, chat_history_id: str, last_k: int | None = None) -> list[ChatMessage]:
        if chat_history_id not in self._next_number:
            return []
        return list(self._store.retrieve_messages(chat_history_id, last_k))

    def delete_messages(self, chat_history_id: str) -> None:
        self.forget(chat_history_id)

    def delete_all_messages(self) -> None:
        """Every conversation of this store (never the reference store's other users' ones)."""
        for chat_history_id in list(self._next_number):
            self.forget(chat_history_id)

    # What Conversations needs besides.

    def create(self, chat_history_id: str) -> None:
        self._next_number[chat_history_id] = 0
        while len(self._next_number) > self.max_conversations:
            oldest, _ = self._next_number.popitem(last=False)
            self._store.delete_messages(oldest)

    def messages(self, chat_history_id: str, *, touch: bool = False) -> list[ChatMessage] | None:
        if chat_history_id not in self._next_number:
            return None
        if touch:
            self._next_number.move_to_end(chat_history_id)
        return self.retrieve_messages(chat_history_id)

    def append_turn(self, chat_history_id: str, turn: list[ChatMessage]) -> bool:
        if chat_history_id not in self._next_number:
            return False
        self._write(chat_history_id, turn)
        return True

    def forget(self, chat_history_id: str) -> bool:
        if self._next_number.pop(chat_history_id, None) is None:
            return False
        self._store.delete_messages(chat_history_id)
        return True

    def close(self) -> None:
        self.delete_all_messages()

    def _write(self, chat_history_id: str, messages: list[ChatMessage]) -> int:
        number = self._next_number[chat_history_id]
        numbered = []
        for message in messages:
            if message.meta.get(MESSAGE_ID) is None:
                message = replace(message, _meta={**message.meta, MESSAGE_ID: str(number)})
                number += 1
            numbered.append(message)
        self._next_number[chat_history_id] = number
        self._next_number.move_to_end(chat_history_id)
        written = self._store.write_messages(chat_history_id, numbered)
        self._trim(chat_history_id)
        return written

    def _trim(self, chat_history_id: str) -> None:
        stored = self._store.retrieve_messages(chat_history_id)
        keep = keep_count(len(stored), self.max_messages)
        if keep < len(stored):
            self._store.delete_messages(chat_history_id)
            self._store.write_messages(chat_history_id, stored[len(stored) - keep :])
