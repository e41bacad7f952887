-- LwM2M endpoints provisioned for the gateway (sqlite). Each is a device (a row of devices) plus its
-- endpoint name and DTLS pre-shared key; the key is kept in clear (hex) because the DTLS server
-- needs the key itself to complete a PSK handshake.
CREATE TABLE lwm2m_endpoints (
    endpoint TEXT PRIMARY KEY,
    device_id TEXT NOT NULL UNIQUE REFERENCES devices(id),
    psk_identity TEXT NOT NULL,
    psk TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
