"""Durable stores: the contract (``contract``), the row encoding (``codec``), and one
module per technology (``memory``, ``sqlite``, ``postgres``)."""
