"""`Conversations`: the service's memory of multi-turn chats, bounded and least-recently-used first out.

The messages live in haystack-experimental's `InMemoryChatMessageStore`. In 0.19 its storage is one
module-level dict shared by every instance, so this wrapper keeps its own record of the ids it owns
(in use order, for eviction), never calls `delete_all_messages`, and deletes only its own ids when
the app stops; it also numbers messages itself (`chat_message_id`), because the store's own counter
restarts from the message count and would collide once old messages have been trimmed.

Ids are issued by the server, never chosen by the client: an id is the only thing that lets someone
read or delete a conversation, so it is a capability, 192 random bits (`conv_` + 32 URL-safe
characters). A client asks for a new conversation with `"new"`; a well-formed id the service does not
know (evicted, deleted, or from before a restart) also starts a new one, under a fresh id.

Only whole turns are stored: the question and the answer together, once the answer is complete.
Keys are never stored: a turn is two texts.
"""

import re
import secrets
from collections import OrderedDict
from dataclasses import dataclass, field

from haystack.dataclasses import ChatMessage, ChatRole
from haystack_experimental.chat_message_stores.in_memory import InMemoryChatMessageStore

NEW = "new"
ID_PATTERN = re.compile(r"conv_[A-Za-z0-9_-]{32}")


@dataclass(frozen=True)
class Conversation:
    id: str
    history: list[dict[str, str]] = field(default_factory=list)  # {"role", "content"}, oldest first

    @property
    def turns(self) -> int:
        return sum(1 for message in self.history if message["role"] == ChatRole.USER.value)


def is_valid_id(value: str) -> bool:
    return value == NEW or ID_PATTERN.fullmatch(value) is not None


class Conversations:
    def __init__(self, max_conversations: int, max_messages: int) -> None:
        self.max_conversations = max_conversations
        self.max_messages = max_messages
        self._store = InMemoryChatMessageStore(skip_system_messages=True, last_k=None)
        self._next_number: OrderedDict[str, int] = OrderedDict()  # id -> next chat_message_id, LRU order

    def __len__(self) -> int:
        return len(self._next_number)

    def open(self, requested: str) -> Conversation:
        """The conversation `requested` names, or a new one (for `"new"` or an id not known here)."""
        if requested in self._next_number:
            self._next_number.move_to_end(requested)
            return Conversation(requested, self.messages(requested) or [])
        conversation_id = "conv_" + secrets.token_urlsafe(24)
        self._next_number[conversation_id] = 0
        while len(self._next_number) > self.max_conversations:
            oldest, _ = self._next_number.popitem(last=False)
            self._store.delete_messages(oldest)
        return Conversation(conversation_id)

    def messages(self, conversation_id: str) -> list[dict[str, str]] | None:
        if conversation_id not in self._next_number:
            return None
        stored = self._store.retrieve_messages(conversation_id)
        return [{"role": message.role.value, "content": message.text or ""} for message in stored]

    def record_turn(self, conversation_id: str, question: str, answer: str) -> bool:
        """Store a completed turn; False if the conversation is gone (deleted or evicted meanwhile)."""
        number = self._next_number.get(conversation_id)
        if number is None:
            return False
        turn = [ChatMessage.from_user(question), ChatMessage.from_assistant(answer)]
        for offset, message in enumerate(turn):
            message.meta["chat_message_id"] = str(number + offset)
        self._next_number[conversation_id] = number + len(turn)
        self._next_number.move_to_end(conversation_id)
        self._store.write_messages(conversation_id, turn)
        self._trim(conversation_id)
        return True

    def _trim(self, conversation_id: str) -> None:
        """Drop the oldest whole turns until the conversation holds at most `max_messages` messages."""
        stored = self._store.retrieve_messages(conversation_id)
        if len(stored) <= self.max_messages:
            return
        keep = self.max_messages - self.max_messages % 2  # whole turns: a question with its answer
        self._store.delete_messages(conversation_id)
        self._store.write_messages(conversation_id, stored[len(stored) - keep :])

    def delete(self, conversation_id: str) -> bool:
        if self._next_number.pop(conversation_id, None) is None:
            return False
        self._store.delete_messages(conversation_id)
        return True

    def clear(self) -> None:
        for conversation_id in list(self._next_number):
            self.delete(conversation_id)
