"""Clients of the outside world: one connector module per system type, and the link stores.

:func:`connector_for` builds the connector of a configured system. Connector modules are
imported only when a system of their type is used, so one system's dependencies (an OAuth
library, say) are never needed to run another's.
"""

from __future__ import annotations

import importlib

from connectors.base import Connector
from core.model import SystemConfig

#: system type -> "module:class" of its connector; a new system is one line here
_CONNECTORS = {
    "customwebshop": "connectors.customwebshop:CustomWebshopConnector",
    "customerp": "connectors.customerp:CustomErpConnector",
    "businesscentral": "connectors.businesscentral:BusinessCentralConnector",
    "businessnxt": "connectors.businessnxt:BusinessNxtConnector",
    "exact": "connectors.exact:ExactConnector",
}

#: the system types that have a connector
SYSTEM_TYPES = tuple(sorted(_CONNECTORS))


def connector_for(config: SystemConfig) -> Connector:
    """A new connector for the system ``config`` describes."""
    try:
        target = _CONNECTORS[config.type]
    except KeyError:
        raise ValueError(f"system {config.name!r}: unknown type {config.type!r}; known types: "
                         f"{', '.join(SYSTEM_TYPES)}") from None
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)(config)
