"""The store a configuration asks for (one place, used by the node and its worker processes)."""

from __future__ import annotations

from mediator.config import AppConfig
from mediator.store.crypto import Cipher, load_key
from mediator.store.sqlite import SQLiteStore


def make_store(cfg: AppConfig) -> SQLiteStore:
    st = cfg.store
    key = load_key(cfg.resolve(st.encryption_key_file)) if st.encryption_key_file else None
    return SQLiteStore(cfg.store_path, commit_interval_ms=st.commit_interval_ms, max_batch=st.commit_max_batch,
                       synchronous=st.synchronous, cipher=Cipher(key))
