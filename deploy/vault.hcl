# Vault server for svid-broker's Vault backend. Initialise and unseal once:
#   docker compose -f deploy/docker-compose.yml exec vault vault operator init
storage "file" {
  path = "/vault/data"
}
listener "tcp" {
  address     = "0.0.0.0:8200"
  # Terminate TLS here in production (tls_cert_file / tls_key_file).
  tls_disable = true
}
api_addr = "http://vault:8200"
ui = false
