// The dashboard's shell: sign-in, navigation (#/cluster, #/jobs, #/jobs/<id>) and one view at a time.

import { ApiError, forgetToken, get, setToken, token } from "./api.js";
import { showCluster } from "./cluster.js";
import { showJob } from "./job.js";
import { showJobs } from "./jobs.js";

const signIn = document.getElementById("sign-in");
const signInError = document.getElementById("sign-in-error");
const nav = document.getElementById("nav");
const view = document.getElementById("view");
let leaveView = () => {};

function route() {
  leaveView();
  leaveView = () => {};
  if (!token()) {
    view.replaceChildren();
    nav.hidden = true;
    signIn.hidden = false;
    signIn.elements.token.focus();
    return;
  }
  signIn.hidden = true;
  nav.hidden = false;
  const [, page, id] = location.hash.split("/");
  for (const link of nav.querySelectorAll("a")) link.classList.toggle("current", link.hash === `#/${page}`);
  if (page === "jobs" && id) leaveView = showJob(view, decodeURIComponent(id));
  else if (page === "jobs") leaveView = showJobs(view);
  else leaveView = showCluster(view);
}

function signedOut(message) {
  forgetToken();
  signInError.textContent = message;
  route();
}

signIn.addEventListener("submit", async (event) => {
  event.preventDefault();
  const candidate = signIn.elements.token.value.trim();
  setToken(candidate);
  try {
    await get("/v1/cluster");
  } catch (error) {
    forgetToken();
    signInError.textContent = error instanceof ApiError && error.status === 401
      ? "Wrong token: the service refused it. Copy it again from ~/.miner/token on the head node."
      : `The service did not answer: ${error.message}`;
    return;
  }
  signIn.reset();
  signInError.textContent = "";
  route();
});

document.getElementById("sign-out").addEventListener("click", () => signedOut(""));
// a request refused for its token (the service restarted with a new one): back to the sign-in form
window.addEventListener("token-refused", () => signedOut("The service refused the token; sign in again."));
window.addEventListener("hashchange", route);
route();
