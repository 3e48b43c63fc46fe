"""Phone facts: raw number text -> PhoneFacts (parse, validity, type, carrier, CN segment)."""

from server.phone.mask import mask
from server.phone.parser import MAX_RAW_LENGTH, CacheInfo, PhoneParseError, PhoneParser
from server.phone.segments import SEGMENT_KINDS, Segment, SegmentTable

__all__ = [
    "MAX_RAW_LENGTH",
    "SEGMENT_KINDS",
    "CacheInfo",
    "PhoneParseError",
    "PhoneParser",
    "Segment",
    "SegmentTable",
    "mask",
]
