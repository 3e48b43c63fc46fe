"""Per-tenant intelligence lists: CSV files of numbers, prefixes and ranges with labels."""

from server.lists.index import ListIndex, ListStats
from server.lists.loader import ListIssue, ListLoadError, LoadedList, load_list, parse_list
from server.lists.networks import NetworkIndex

__all__ = [
    "ListIndex",
    "ListIssue",
    "ListLoadError",
    "ListStats",
    "LoadedList",
    "NetworkIndex",
    "load_list",
    "parse_list",
]
