"""Ringfence policy language: grammar, checker, compiler. Pure: no I/O, no asyncio."""
