from django.urls import path

from apps.knowledge.apis import KnowledgeBaseSearchApi

urlpatterns = [
    path(
        "knowledge-bases/<int:kb_id>/search",
        KnowledgeBaseSearchApi.as_view(),
        name="knowledge-base-search",
    ),
]
