"""Local mode's API Gateway: the REST API with a Lambda proxy integration, in front of the API
handler on loopback (gateway), its HTTP server and body limits (http_front), its IAM and token
authorization (authorization) and the proxy event and response shapes (lambda_proxy)."""

from labbatch.local.apigateway.gateway import MAX_PAYLOAD_BYTES, LocalApiGateway
from labbatch.local.apigateway.lambda_proxy import LocalLambdaContext

__all__ = ["MAX_PAYLOAD_BYTES", "LocalApiGateway", "LocalLambdaContext"]
