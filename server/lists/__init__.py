"""Per-tenant intelligence lists: CSV files of numbers, prefixes and ranges with labels."""

from server.lists.index import ListIndex, ListStats
from server.lists.loader import ListIssue, ListLoadError, load_list, parse_list

__all__ = ["ListIndex", "ListIssue", "ListLoadError", "ListStats", "load_list", "parse_list"]
