// Sign in: exchange an API token for a session cookie (HttpOnly, SameSite=Strict), then open the console.
const form = document.getElementById("sign-in-form");
const error = document.getElementById("sign-in-error");
const input = document.getElementById("token");
input.focus();
form.addEventListener("submit", async (event) => {
  event.preventDefault();
  error.textContent = "";
  input.removeAttribute("aria-invalid");
  const token = input.value.trim();
  if (!token) {
    error.textContent = "Enter an API token.";
    input.setAttribute("aria-invalid", "true");
    return;
  }
  const response = await fetch("/console/session", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ token }),
    credentials: "same-origin",
  });
  if (response.ok) {
    window.location.assign("/#/jobs");
    return;
  }
  let message = `Sign-in failed (${response.status}).`;
  try {
    message = (await response.json()).error.message || message;
  } catch (_) { /* keep the generic message */ }
  error.textContent = message;
  input.setAttribute("aria-invalid", "true");
  input.select();
});
