// motionlib serve: follow a render job's progress, then play the video (no framework, works offline).
(function () {
  var box = document.getElementById("job");
  if (!box) return;
  var id = box.dataset.job;
  function text(s) { return document.createTextNode(s); }
  function tick() {
    fetch("/api/jobs/" + id).then(function (r) { return r.json(); }).then(function (j) {
      box.querySelector("progress").value = j.progress;
      var status = box.querySelector(".status");
      status.textContent = "";
      status.appendChild(text(j.status + (j.queue_position ? " (position " + j.queue_position + " in the queue)" : "") +
                              (j.message !== j.status ? ": " + j.message : "")));
      if (j.status === "done") {
        var v = document.createElement("video");
        v.src = "/renders/" + j.result.render_id; v.controls = v.autoplay = v.loop = v.muted = true;
        v.setAttribute("playsinline", "");
        box.appendChild(v);
      } else if (j.status === "failed") {
        var p = document.createElement("p"); p.className = "error"; p.appendChild(text(j.error || "failed"));
        box.appendChild(p);
      } else {
        setTimeout(tick, 1000);
      }
    }).catch(function () { setTimeout(tick, 3000); });
  }
  if (box.dataset.status === "queued" || box.dataset.status === "running") setTimeout(tick, 500);
})();
