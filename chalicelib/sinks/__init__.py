"""Search-engine sinks: the consumer writes `Action`s and gets one `ItemResult` per action back.

The consumer never knows which engine it talks to; each engine has its own module.
"""
