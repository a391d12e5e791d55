"""Data structures NFs build on: hash table, flow table, LPM, Maglev, classifier."""
