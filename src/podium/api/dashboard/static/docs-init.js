// Swagger UI over podium's OpenAPI document, read with the dashboard's session.
"use strict";
window.addEventListener("DOMContentLoaded", () => {
  window.ui = SwaggerUIBundle({ url: "/ui/openapi.json", dom_id: "#swagger-ui", deepLinking: true });
});
