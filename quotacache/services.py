"""Built-in service profiles: Cryptometer's endpoints and KingFisher's data types.

Profiles are plain config dicts in the shape of the TOML file, merged under the user's
``[services.*]`` tables by ``load_settings``; the figures are the seed's and DESIGN.md's.
"""

from __future__ import annotations

from typing import Any

_TIMEFRAME = "1h"


def _cm(path: str, ttl: str, priority: str, symbol_param: str | None = None,
        symbol_format: str = "{symbol}", fan_out: str | None = None,
        **params: str) -> dict[str, Any]:
    return {"path": path, "ttl": ttl, "priority": priority, "symbol_param": symbol_param,
            "symbol_format": symbol_format, "fan_out": fan_out, "params": params}


CRYPTOMETER: dict[str, Any] = {
    "base_url": "https://api.cryptometer.io",
    "auth": {"query": "api_key", "env": "CRYPTOMETER_API_KEY"},
    # The seed's 100/60 and 20/10, plus the documented account limit 10/5 that 20/10 can break.
    "limits": ["100/60", "20/10", "10/5"],
    "endpoint_limits": ["10/60"],
    "envelope": "cryptometer",
    "endpoints": {
        "ticker": _cm("/ticker/", "2m", "critical", "market_pair", "{symbol}-USDT", e="binance"),
        "rapid_movements": _cm("/rapid-movements/", "3m", "critical"),
        "ls_ratio": _cm("/ls-ratio/", "5m", "high", "pair", "{symbol}-USDT",
                        e="binance_futures", timeframe=_TIMEFRAME),
        "liquidation_data_v2": _cm("/liquidation-data-v2/", "5m", "high", "symbol",
                                   "{symbol_lower}"),
        "open_interest": _cm("/open-interest/", "10m", "high", "market_pair", "{symbol}USDT",
                             e="binance_futures"),
        "trend_indicator_v3": _cm("/trend-indicator-v3/", "15m", "medium"),
        "ai_screener": _cm("/ai-screener/", "30m", "medium", type="full"),
        "ai_screener_analysis": _cm("/ai-screener-analysis/", "30m", "medium", "symbol"),
        # List endpoints: one call fills the entry of every symbol they list.
        "tickerlist": _cm("/tickerlist/", "15m", "medium", fan_out="symbol", e="binance"),
        "tickerlist_pro": _cm("/tickerlist-pro/", "15m", "medium", fan_out="symbol",
                              e="binance"),
        "coinlist": _cm("/coinlist/", "6h", "low", fan_out="symbol", e="binance"),
        "cryptocurrency_info": _cm("/cryptocurrency-info/", "1h", "low", e="binance",
                                   filter="all"),
        "coin_info": _cm("/coininfo/", "1h", "low"),
        "forex_rates": _cm("/forex-rates/", "2h", "low", source="USD"),
        "xtrades": _cm("/xtrades/", "5m", "high", "symbol", e="binance"),
        "large_trades_activity": _cm("/large-trades-activity/", "5m", "high", "pair",
                                     "{symbol}-USDT", e="binance"),
        "volume_flow": _cm("/volume-flow/", "15m", "medium", timeframe=_TIMEFRAME),
        "liquidity_lens": _cm("/liquidity-lens/", "15m", "medium", timeframe=_TIMEFRAME),
        "volatility_index": _cm("/volatility-index/", "15m", "medium", e="binance",
                                timeframe=_TIMEFRAME),
        "ohlcv": _cm("/ohlcv/", "15m", "medium", "pair", "{symbol}-USDT", e="binance",
                     timeframe=_TIMEFRAME),
        "merged_trade_volume": _cm("/merged-trade-volume/", "15m", "medium", "symbol",
                                   timeframe=_TIMEFRAME, exchange_type="spot"),
    },
}

#: KingFisher data types by cache level: HOT 5 min, WARM 15 min, COLD 1 h, FROZEN 6 h.
KINGFISHER_LEVELS: dict[str, tuple[str, str, list[str]]] = {
    "HOT": ("5m", "critical", ["liquidation_map", "rapid_movements"]),
    "WARM": ("15m", "high", ["rsi_heatmap", "liq_heatmap", "liq_ratio_shortterm"]),
    "COLD": ("1h", "medium", ["liq_ratio_longterm", "support_resistance"]),
    "FROZEN": ("6h", "low", ["professional_report", "historical_analysis"]),
}


KINGFISHER: dict[str, Any] = {
    # Image analysis by a vision model: 10 calls a minute for the whole service.
    "base_url": "http://127.0.0.1:28080/kingfisher",
    "auth": {"header": "X-API-Key", "env": "KINGFISHER_API_KEY"},
    "limits": ["10/60"],
    "endpoints": {
        data_type: {"path": f"/analysis/{data_type}", "ttl": ttl, "priority": priority}
        for ttl, priority, types in KINGFISHER_LEVELS.values()
        for data_type in types
    },
}

#: KingFisher keeps its results in Airtable and receives images over Telegram; each is an
#: upstream with limits of its own.
KINGFISHER_AIRTABLE: dict[str, Any] = {
    "base_url": "http://127.0.0.1:28080/airtable",
    "auth": {"header": "Authorization", "env": "AIRTABLE_API_KEY"},
    "limits": ["5/10"],
    "endpoints": {"records": {"path": "/records", "ttl": "15m", "priority": "medium"}},
}
KINGFISHER_TELEGRAM: dict[str, Any] = {
    "base_url": "http://127.0.0.1:28080/telegram",
    "auth": {"query": "token", "env": "TELEGRAM_BOT_TOKEN"},
    "limits": ["30/60"],
    "endpoints": {"updates": {"path": "/updates", "ttl": "5m", "priority": "high",
                              "symbol_param": None}},
}

PROFILES: dict[str, dict[str, Any]] = {
    "cryptometer": {"cryptometer": CRYPTOMETER},
    "kingfisher": {"kingfisher": KINGFISHER, "kingfisher_airtable": KINGFISHER_AIRTABLE,
                   "kingfisher_telegram": KINGFISHER_TELEGRAM},
}
