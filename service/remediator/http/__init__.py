"""The HTTP side: the webhook intake, the operator API, health, metrics and the OpenAPI
document, who may call them (auth), the served certificate (tls) and the routes that join them."""
