// Submits the SAML message form on load (the page's CSP allows only same-origin scripts, no inline ones).
// Without JavaScript the visible Continue button does the same.
document.querySelectorAll("form[data-auto-submit]").forEach(function (form) { form.submit(); });
