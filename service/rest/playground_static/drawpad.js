// A drawing pad for mouse, pen and touch alike (pointer events): thick white strokes on black. The page sends
// the pad as it is (a PNG at the pad's own size); the server centres and scales the digit for the model.

import { canvasPng } from "./imaging.js";

const STROKE_FRACTION = 0.08; // of the pad's width: about 2 px once the server scales a full-height digit to 20 px

export class DrawingPad {
  constructor(canvas, onStrokeEnd) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d", { willReadFrequently: true });
    this.onStrokeEnd = onStrokeEnd;
    this.last = null;
    this.clear();
    canvas.addEventListener("pointerdown", (e) => this.#down(e));
    canvas.addEventListener("pointermove", (e) => this.#move(e));
    canvas.addEventListener("pointerup", (e) => this.#up(e));
    canvas.addEventListener("pointercancel", (e) => this.#up(e));
  }

  clear() {
    this.ctx.fillStyle = "#000";
    this.ctx.fillRect(0, 0, this.canvas.width, this.canvas.height);
    this.empty = true;
  }

  /** The drawing as a PNG of the whole pad, colours and size as drawn. */
  toPng() {
    return canvasPng(this.canvas);
  }

  #point(event) {
    const rect = this.canvas.getBoundingClientRect();
    return {
      x: ((event.clientX - rect.left) * this.canvas.width) / rect.width,
      y: ((event.clientY - rect.top) * this.canvas.height) / rect.height,
    };
  }

  #line(from, to) {
    const ctx = this.ctx;
    ctx.strokeStyle = "#fff";
    ctx.fillStyle = "#fff";
    ctx.lineWidth = this.canvas.width * STROKE_FRACTION;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.beginPath();
    ctx.moveTo(from.x, from.y);
    ctx.lineTo(to.x, to.y);
    ctx.stroke();
  }

  #down(event) {
    if (event.button !== 0) return;
    event.preventDefault();
    this.canvas.setPointerCapture(event.pointerId);
    this.last = this.#point(event);
    this.#line(this.last, this.last); // a tap leaves a dot
    this.empty = false;
  }

  #move(event) {
    if (!this.last) return;
    event.preventDefault();
    const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
    for (const e of events.length ? events : [event]) {
      const point = this.#point(e);
      this.#line(this.last, point);
      this.last = point;
    }
  }

  #up(event) {
    if (!this.last) return;
    this.last = null;
    if (this.canvas.hasPointerCapture(event.pointerId)) this.canvas.releasePointerCapture(event.pointerId);
    this.onStrokeEnd();
  }
}
