"""Camera sources: live streams whose frames the server pulls from a camera's URL (RTSP, HTTP)
instead of a client pushing them, run through the same engine as pushed streams.

``url_policy`` decides which URLs may be pulled at all (a URL chosen by a client is an SSRF
door); ``reader`` keeps a camera's newest frame through drops and stalls; the rest puts a
source together for the routes (registry, source, viewers, overlay).
"""
