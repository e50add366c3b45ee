"""Service configuration: one TOML file, validated once at load into frozen dataclasses.

Every mistake is reported as ONE line a user can act on, naming the file, the key path and
the problem, e.g.::

    config.toml: bus.baud: expected an integer, got "fast"
    config.toml: unknown key 'bus.buad' (did you mean 'bus.baud'?)
    config.toml: breaker.tr_s: the smartPDU 48 main breaker (NM8S-250) has no tR switch

``sections``: the result types and their defaults; ``table``: the typed reading of one TOML
table; ``reader``: the file, section by section. The unit's geometry (models, groups,
channel ids) and the label rules are in host.domain.
"""

from host.config.reader import (
    config_from_document,
    default_config,
    load_config,
    parse_config,
    read_config_document,
)
from host.config.sections import (
    BusConfig,
    ChannelsConfig,
    ConfigError,
    FrontPanelConfig,
    HistoryConfig,
    MeterConfig,
    MqttConfig,
    Parity,
    PeersConfig,
    PrometheusConfig,
    Rs485Mode,
    ServiceConfig,
    StorageConfig,
    UnitConfig,
    WebConfig,
    default_unit_id,
    default_var_dir,
)

__all__ = [
    "BusConfig",
    "ChannelsConfig",
    "ConfigError",
    "FrontPanelConfig",
    "HistoryConfig",
    "MeterConfig",
    "MqttConfig",
    "Parity",
    "PeersConfig",
    "PrometheusConfig",
    "Rs485Mode",
    "ServiceConfig",
    "StorageConfig",
    "UnitConfig",
    "WebConfig",
    "config_from_document",
    "default_config",
    "default_unit_id",
    "default_var_dir",
    "load_config",
    "parse_config",
    "read_config_document",
]
