"""Hostile corpus of the second round: each module builds one class of crafted inputs from code."""
