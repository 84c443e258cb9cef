"""The records every part of edgecnn reads and writes, and the gate that reads an export back."""
