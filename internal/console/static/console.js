// opendps console: optional conveniences; every page works without them.
document.addEventListener("DOMContentLoaded", () => {
  // The create form's region select reloads the form for that region.
  for (const sel of document.querySelectorAll("select[data-autosubmit]")) {
    sel.addEventListener("change", () => sel.form.submit());
  }
  // Destructive forms ask first.
  for (const f of document.querySelectorAll("form[data-confirm]")) {
    f.addEventListener("submit", (e) => {
      if (!window.confirm(f.dataset.confirm)) e.preventDefault();
    });
  }
});
