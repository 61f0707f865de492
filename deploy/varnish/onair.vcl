vcl 4.1;

# Varnish in front of one onair radio, for HLS at scale (tests/it/hls.rs runs this file).
#
# onair's Cache-Control already says how long each HLS response may be kept: parts and segments
# for their window (their names are never reused), blocking playlist reloads (_HLS_msn) for six
# target durations (each names a future state), plain playlists for 1 s. Varnish coalesces
# identical requests on its waiting list and answers every waiter the moment the origin's answer
# lands, so N players waiting for the same part cost onair one request.
#
# The one change: a plain playlist (a player's first request) is kept 0.25 s, not the origin's
# 1 s. A player tunes in from the first playlist it gets; HTTP ages are whole seconds, so a
# playlist up to 1 s old reads as `Age: 0` and the player would start up to 1 s further from
# live, for good. Plain playlists are rare with Low-Latency HLS (players then use blocking
# reloads), so the shorter lifetime costs the origin little.
#
# Listener streams (the mounts themselves) are passed through untouched: each listener's
# stream is its own, endless, and not cacheable.

backend onair {
    .host = "127.0.0.1";
    .port = "8000";
    # A blocking playlist or hinted part may legally wait three target durations (12 s).
    .first_byte_timeout = 15s;
    .between_bytes_timeout = 15s;
}

sub vcl_recv {
    if (req.url !~ "^/hls/") {
        return (pipe);
    }
}

sub vcl_backend_response {
    if (bereq.url ~ "\.m3u8(\?|$)" && bereq.url !~ "[?&]_HLS_msn=") {
        set beresp.ttl = 0.25s;
    }
}
